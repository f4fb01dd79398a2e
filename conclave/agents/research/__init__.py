"""The ``research`` run kind: a context builder fills a file-system knowledge base, a report writer
turns it into a cited ``report.md`` (the FS-Researcher workflow, on Conclave's durable steps).

Stage 1, the context builder (``run/build``). A planner call proposes key questions; with the
question itself they form the topic tree in ``index.md``. Then, in rounds, each key question is
searched (a deterministic, metered search call, so sources get archived whatever the model can do;
each round digs one page deeper and skips sources already archived), and a librarian agent with a
fresh context searches, reads and appends evidence notes to ``knowledge_base/``. After each round the
workflow extracts evidence for every new source into the key question's note, citing the archived
file. The number of rounds and the stage's share of the budget are the test-time-scaling knob.

Stage 2, the report writer (``run/write``). An outline call titles one section per key question with
evidence (``report_outline.md``); the sections are written in parallel, each by its own agent with
only the file tools and its own scope (``run/write/s{n}``), or by an ensemble when one is chosen;
then ``report.md`` is assembled with numbered citations, a references list mapping each number to a
file in ``knowledge_base/sources/``, and checked (every citation resolves, no empty section).

What does not depend on the model. A 135M model cannot plan, search or write reliably, so the
workflow never needs it to: the question is always a key question, searches run per key question,
evidence extracts are copied from the sources (never invented), and a section whose writer failed,
ran out of budget or wrote nothing usable is written from its evidence. Model output is used where
it exists and is checked (citations to unknown numbers are dropped). Every call is metered.

Durability. Every unit is a step under ``research/`` and returns the workflow's checklist
(``ResearchState``), so the run's checkpoint says which to-dos are done, partial, skipped or
failed; a resumed run replays committed steps (no model call, tool call or search is repeated,
no source is gathered twice) and continues with the first that did not commit.

Budgets. Without ``scopes`` in the run's budget, ``build`` gets ``build_share`` of every limit and
``write`` the rest; each section gets an equal share of ``write``. When stage 1 runs out, stage 2
still writes from what exists; the run ends ``succeeded`` with a detail, or ``budget_exhausted``
only if no section could be written.

Dig deeper. ``continue_from=<run id>`` copies that run's committed workspace and checklist and goes on
from there with this run's budget: known key questions are searched one page deeper, sources already
archived are not fetched again, and the report is rewritten.

Ensembles. With ``section_ensemble`` (or the task's ``ensemble``) each section is drafted by
``conclave.agents.ensemble.draft_with_ensemble`` (the contract is ``conclave.agents.drafting``)
instead of a writer agent.

Modules: ``options`` (the options and the agents' instructions), ``kind`` (checks, budget split,
the step sequence, outcome), ``base`` (what both stages share), ``build`` (stage 1), ``write``
(stage 2), ``evidence`` (similarity: distinct questions, evidence allocation, grounding), ``state``
(the checklist and its deterministic text work).
"""

from ..drafting import DraftRequest, EnsembleDrafter, EvidenceItem
from .kind import KIND, ResearchWorkflow, check, ensemble_drafter, run, run_research, stage_budget
from .options import ResearchOptions
from .state import ResearchState

__all__ = [
    "KIND",
    "DraftRequest",
    "EnsembleDrafter",
    "EvidenceItem",
    "ResearchOptions",
    "ResearchState",
    "ResearchWorkflow",
    "check",
    "ensemble_drafter",
    "run",
    "run_research",
    "stage_budget",
]
