"""manifest.json, typed: the one reader of an export set's manifest (export/manifest.py writes it).

`Manifest.load(path)` reads it once, checks the version, resolves every file against the
manifest's own folder (so a copied or moved export set works from any working directory), and
turns every problem into one MQDeployError that names the fix. Hashes are computed at most once
per file (`modified_files`). The raw dict stays available (`raw`) for what a reader only passes
on, e.g. into an engine's sidecar."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MQDeployError
from ..files import file_sha256
from .naming import MANIFEST_NAME, manifest_path

MANIFEST_VERSION = 1
REEXPORT = "re-export with `mq-deploy export`"


@dataclass(frozen=True)
class GraphEntry:
    """One graph of the set (`graphs.<kind>` in the manifest), paths absolute."""
    kind: str                           # "prefill" or "decode"
    path: Path
    sha256: str | None
    external_data: Path | None          # weights stored beside the graph (maybe shared with the other graph)
    external_sha256: str | None
    raw: dict = field(repr=False)

    @property
    def inputs(self) -> list[dict]:
        return self.raw.get("inputs", [])

    @property
    def outputs(self) -> list[dict]:
        return self.raw.get("outputs", [])

    @property
    def plugin_nodes(self) -> list[dict] | None:
        """[{name, op, version, namespace}] of the mq_deploy plugin nodes; None in older manifests."""
        return self.raw.get("plugin_nodes")

    @property
    def linear_forms(self) -> dict[str, str]:
        return self.raw.get("linears", {})


@dataclass
class Manifest:
    path: Path                          # the manifest.json file
    raw: dict = field(repr=False)
    _hashes: dict = field(default_factory=dict, repr=False)

    # ---- reading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path) -> "Manifest":
        """The manifest of an export set: `path` is a graph of the set (model.onnx), its folder, or
        the manifest file itself."""
        path = Path(path)
        mpath = path if path.name == MANIFEST_NAME else (path / MANIFEST_NAME if path.is_dir() else manifest_path(path))
        if path.suffix == ".onnx" and not path.is_file():
            raise MQDeployError(f"{path} does not exist; export it first with `mq-deploy export`")
        if not mpath.is_file():
            raise MQDeployError(f"no {MANIFEST_NAME} beside {path}; it holds the model, precision and graph I/O: "
                                f"{REEXPORT}")
        try:
            raw = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise MQDeployError(f"cannot read {mpath} ({e}); {REEXPORT}") from None
        if not isinstance(raw, dict) or raw.get("manifest_version") != MANIFEST_VERSION \
                or not isinstance(raw.get("graphs"), dict) or not raw["graphs"]:
            raise MQDeployError(f"{mpath} is not a version-{MANIFEST_VERSION} mq-deploy manifest; {REEXPORT} "
                                "of this version")
        return cls(mpath.resolve(), raw)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def graphs(self) -> dict[str, GraphEntry]:
        out = {}
        for kind, entry in self.raw["graphs"].items():
            if not isinstance(entry, dict) or "file" not in entry:
                raise MQDeployError(f"{self.path}: graph {kind!r} has no file entry; {REEXPORT}")
            data = entry.get("external_data") or {}
            out[kind] = GraphEntry(kind, self.folder / entry["file"], entry.get("sha256"),
                                   self.folder / data["file"] if data.get("file") else None, data.get("sha256"),
                                   entry)
        return out

    def graph(self, kind: str) -> GraphEntry:
        graphs = self.graphs
        if kind not in graphs:
            hint = ""
            if kind == "decode":
                hint = (" (a Vision Mamba classifies whole images: open its sessions without the decode graph, "
                        "e.g. OnnxruntimeSession(path, decode=False))" if self.is_vision
                        else " (exported with --no-decode: export again without it)")
            raise MQDeployError(f"the export set at {self.folder} has no {kind} graph{hint}")
        return graphs[kind]

    def graph_of(self, onnx_path) -> GraphEntry:
        """The entry describing `onnx_path`, or one error when the file is not part of this set."""
        target = Path(onnx_path).resolve()
        for entry in self.graphs.values():
            if entry.path.resolve() == target:
                return entry
        listed = ", ".join(e.path.name for e in self.graphs.values())
        raise MQDeployError(f"{self.path} describes {listed}, not {Path(onnx_path).name}: it is not part of that "
                            f"export set; keep the file names export wrote, or {REEXPORT}")

    # ---- what the set is ----------------------------------------------------------------------------
    @property
    def model_config(self) -> dict:
        return self.raw["model"]

    @property
    def is_vision(self) -> bool:
        """A Vision Mamba's export: images in, class logits out, no decode graph."""
        return self.raw["model"].get("model_type") == "vim"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        m = self.raw["model"]
        return int(m["in_channels"]), int(m["img_size"]), int(m["img_size"])

    @property
    def preprocessing(self) -> dict | None:
        """A Vision Mamba's image preprocessing (data/images.Preprocessing.to_dict); None for a language
        model and in manifests written before it was recorded."""
        return self.raw.get("preprocessing")

    @property
    def vocab_size(self) -> int:
        return int(self.raw["model"]["vocab_size"])

    @property
    def tokenizer(self) -> str | None:
        """The built-in tokenizer the model declares ("bytes"), or None (its tokenizer files)."""
        return (self.raw["model"].get("mq_deploy") or {}).get("tokenizer")

    @property
    def precision(self) -> str:
        return self.raw["precision"]

    @property
    def scan(self) -> str:
        return self.raw.get("scan", "plugin")

    @property
    def quantization(self) -> dict | None:
        return self.raw.get("quantization")

    @property
    def label(self) -> str:
        """'mambaquant W8A8' or 'FP'."""
        q = self.quantization
        return f"{q['recipe']} W{q['config']['w_bits']}A{q['config']['a_bits']}" if q else "FP"

    @property
    def profile(self) -> dict:
        return self.raw.get("profile") or {}

    @property
    def source_sha256(self) -> str | None:
        return (self.raw.get("source") or {}).get("sha256")

    @property
    def source_path(self) -> Path:
        """The model directory the set was exported from: where export saw it, else at the same place
        relative to the manifest (both moved together), else the recorded path (a reader that needs
        it says so)."""
        source = self.raw.get("source") or {}
        recorded = Path(source.get("path", "."))
        if recorded.is_dir():
            return recorded
        relative = source.get("relative_path")
        if relative is not None and (self.folder / relative).is_dir():
            return (self.folder / relative).resolve()
        return recorded

    # ---- the files -----------------------------------------------------------------------------------
    def files(self) -> dict[Path, str | None]:
        """{file of the set: its recorded sha256}: every graph and external data file (a data file
        shared by both graphs counts once)."""
        files = {}
        for entry in self.graphs.values():
            files[entry.path] = entry.sha256
            if entry.external_data is not None:
                files[entry.external_data] = entry.external_sha256
        return files

    def require_complete(self) -> "Manifest":
        """Every file the manifest lists is there (an interrupted or partial copy is an error)."""
        for path in self.files():
            if not path.is_file():
                raise MQDeployError(f"incomplete export set: {path.name}, listed in {MANIFEST_NAME} at {self.folder}, "
                                    f"is missing; {REEXPORT}")
        return self

    def sha256_of(self, path: Path) -> str:
        key = str(path)
        if key not in self._hashes:
            self._hashes[key] = file_sha256(path)
        return self._hashes[key]

    def modified_files(self) -> list[str]:
        """Names of the set's files that differ from what export recorded (edited since, or left by
        an interrupted write beside an older manifest). Each file is hashed once per Manifest."""
        return [p.name for p, sha in self.files().items() if sha and p.is_file() and self.sha256_of(p) != sha]


def relative_source(source: Path, manifest_folder: Path) -> str | None:
    """The source folder relative to the manifest's folder, for `source.relative_path` (None on
    another drive)."""
    try:
        return os.path.relpath(Path(source).resolve(), Path(manifest_folder).resolve())
    except ValueError:
        return None



def read_manifest(path) -> dict:
    """The manifest's raw dict (through `Manifest.load`: same checks), for readers that only pass it
    on or print it."""
    return Manifest.load(path).raw
