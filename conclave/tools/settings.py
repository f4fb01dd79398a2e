"""Settings of the built-in tools, one section per tool (``[tools.fetch]``, ``[tools.python]``…).

They are deployment settings, not per-run options: which hosts ``fetch_url`` may reach, how the
python sandbox is limited, which MCP servers a worker may start. A task only names tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["FetchSettings", "McpServerSettings", "PythonSettings", "SearchSettings", "ToolSettings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FetchSettings(_Section):
    """``fetch_url``: what may be fetched and how much of it."""

    allow_hosts: list[str] = Field(
        default_factory=list,
        description="If set, only these hosts (exact, or '.example.com' for subdomains) may be fetched. "
        "A host listed here may also be private or loopback.",
    )
    deny_hosts: list[str] = Field(default_factory=list, description="Hosts never fetched (same syntax).")
    allow_private: bool = Field(default=False, description="Allow private, loopback and link-local addresses.")
    ca_bundle: Path | None = Field(
        default=None, description="Extra CA certificates (PEM) to trust besides the system's, e.g. a corporate CA."
    )
    max_bytes: int = Field(default=2_000_000, ge=1_000, description="Bytes read from a response at most.")
    timeout_s: float = Field(default=20.0, gt=0, description="Whole-request time limit.")
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_chars: int = Field(default=12_000, ge=500, description="Characters of text returned to the model.")
    user_agent: str = "Conclave/0.1 (+fetch_url tool)"


class PythonSettings(_Section):
    """``python``: how the sandbox is built and limited. The code runs only under bubblewrap
    (``bwrap``): a read-only minimal root (the interpreter and the system libraries), a fresh
    ``/proc``, ``/tmp`` as a small tmpfs, no network, and the workspace copy as its only writable
    mount. Where bubblewrap cannot run, the tool refuses to start; it never runs code less confined."""

    enabled: bool = True
    bwrap: str = Field(default="bwrap", description="The bubblewrap binary: a path, or a name looked up on PATH.")
    cpu_seconds: int = Field(default=10, ge=1, description="RLIMIT_CPU of the process.")
    wall_seconds: float = Field(default=30.0, gt=0, description="Killed after this long, whatever it does.")
    memory_mb: int = Field(default=512, ge=64, description="RLIMIT_AS (address space).")
    max_output_bytes: int = Field(default=64_000, ge=1_000, description="stdout + stderr kept; more kills it.")
    max_processes: int = Field(default=16, ge=1, description="Processes and threads the code may add.")
    max_file_mb: int = Field(default=16, ge=1, description="RLIMIT_FSIZE: largest file the code may write.")
    tmp_mb: int = Field(default=64, ge=1, description="Size of the sandbox's /tmp (a tmpfs, gone after the run).")
    allow_network: bool = Field(
        default=False,
        description="Keep the worker's network namespace (the code can then reach the network, the worker's "
        "loopback included); the file system stays confined.",
    )
    sandbox_user: str | None = Field(
        default="nobody", description="When the worker runs as root, the code runs as this user."
    )
    python: str | None = Field(
        default=None, description="Interpreter; default: the worker's own (mounted read-only in the sandbox)."
    )
    ro_paths: list[Path] = Field(
        default_factory=list,
        description="More host folders the code may read (mounted read-only at the same path), e.g. a data set.",
    )


class SearchSettings(_Section):
    """``search``: the default provider and the local corpora it can search."""

    provider: Literal["local", "brave", "tavily"] = "local"
    default_corpus: str = Field(default="python-docs", description="Corpus searched when a call names none.")
    corpora: dict[str, Path] = Field(
        default_factory=dict, description="Named folders of .txt/.md/.html/.rst files, searched with BM25."
    )
    api_key: SecretStr | None = Field(default=None, description="Key of the hosted provider.")
    endpoint: str | None = Field(default=None, description="Override the hosted provider's URL.")
    max_results: int = Field(default=5, ge=1, le=20)
    archive: bool = Field(default=True, description="Save results into knowledge_base/sources/.")
    cache_dir: Path | None = Field(default=None, description="Built corpora; default $CONCLAVE_HOME/corpora.")
    python_docs: Literal["auto", "html", "pydoc"] = Field(
        default="auto",
        description="What python-docs indexes: 'html' the installed HTML documentation (python_docs_html), "
        "'pydoc' the docstrings and topics that ship with Python, 'auto' the HTML where it is installed.",
    )
    python_docs_html: Path = Field(
        default=Path("/usr/share/doc/python3/html"),
        description="Python's HTML documentation (Debian's python3-doc installs it here).",
    )

    @model_validator(mode="after")
    def _key_for_hosted(self) -> SearchSettings:
        if self.provider != "local" and self.api_key is None:
            raise ValueError(f"search provider {self.provider!r} needs api_key")
        return self


class McpServerSettings(_Section):
    """One MCP server: a command Conclave starts (stdio) or a streamable-HTTP URL."""

    command: str | None = Field(default=None, description="Executable of a stdio server.")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    url: str | None = Field(default=None, description="Streamable-HTTP endpoint, e.g. http://host:8000/mcp.")
    tools: list[str] | None = Field(default=None, description="Expose only these tools of the server.")
    timeout_s: float = Field(default=60.0, gt=0, description="Per-call time limit.")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of command (stdio) or url (streamable HTTP)")
        return self


class ToolSettings(_Section):
    """The ``[tools]`` section. ``prices`` is USD per call by tool name, so this
    model can replace it in ``Settings.tools`` without changing existing files."""

    prices: dict[str, float] = Field(
        default_factory=dict, description="USD per call, by tool name; '*' for any tool not listed."
    )
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    python: PythonSettings = Field(default_factory=PythonSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    mcp_servers: dict[str, McpServerSettings] = Field(
        default_factory=dict, description="MCP servers by name; a task uses them as 'mcp:<name>'."
    )
