"""Read torch checkpoint files (.pth/.pt/.bin) as they are published, without running pickled code.

A pickle is a small program: its GLOBAL opcodes name callables and its REDUCE opcodes call them,
so `torch.load(weights_only=False)` runs whatever a file names (`os.system` included). Published
checkpoints are not always bare state dicts, though: DWPose's `dw-ll_ucoco_384.pth` is an
mmengine training checkpoint whose `meta` holds numpy arrays and whose `message_hub` holds
mmengine `HistoryBuffer` objects, which `weights_only=True` refuses (and mmengine is not
installed here). So the file goes through torch's own reader (zip records, storages,
`persistent_load`, the legacy format too) with this module as its `pickle_module`:

- built: tensors (`torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`, the storage classes
  torch's reader resolves), `collections.OrderedDict`, plain containers and scalars, `set`,
  `frozenset`, `bytearray`, `torch.Size`, `torch.device`, torch dtypes, and `_codecs.encode`
  for latin-1 only (protocol 2 writes bytes that way);
- anything else a pickle names (numpy arrays and dtypes, mmengine classes, `os.system`, …)
  becomes an `Inert` placeholder: calling it, constructing it or setting its state does nothing;
- BUILD (setting an object's state) is honoured only on placeholders, where it is dropped, and
  on `OrderedDict`, where it is dropped too (a state dict's `_metadata` is not needed).

TorchScript archives are refused: torch.load would hand them to `torch.jit.load`, which runs code.
"""

from __future__ import annotations

import codecs
import collections
import pickle
import types
from functools import cache
from pathlib import Path
from typing import IO, Any, ClassVar

import torch

from streamer.errors import ModelError


class Inert:
    """Stands for an object a checkpoint names but this reader does not build."""

    __slots__ = ()
    qualified = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass  # SETITEMS on a dict subclass

    def append(self, value: Any) -> None:
        pass  # APPENDS on a list subclass

    def extend(self, values: Any) -> None:
        pass

    def add(self, value: Any) -> None:
        pass  # ADDITEMS on a set subclass

    def __repr__(self) -> str:
        return f"<not loaded: {self.qualified}>"


@cache
def placeholder(module: str, name: str) -> type[Inert]:
    """One `Inert` subclass per name, so error messages and reprs say what was skipped."""
    return type(name if name.isidentifier() else "Inert", (Inert,), {"__slots__": (), "qualified": f"{module}.{name}"})


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it (bytes written as latin-1 text), only that."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} refused")
    return codecs.encode(text, "latin1")


_BUILT: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("_codecs", "encode"): _latin1,
}
for _name, _kind in {"set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex}.items():
    _BUILT[("builtins", _name)] = _BUILT[("__builtin__", _name)] = _kind  # protocol 2 writes `__builtin__`


def _torch_global(name: str) -> Any:
    """Torch dtypes (`torch.float32`) and storage classes (`torch.FloatStorage`), nothing else."""
    value = getattr(torch, name, None)
    if isinstance(value, torch.dtype):
        return value
    if name.endswith("Storage") and isinstance(value, type):
        return value
    return None


class Unpickler(pickle._Unpickler):
    """The pure-Python unpickler with `find_class` and BUILD restricted (see the module doc)."""

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)
    stack: list[Any]  # the pickle machine's stack (set by _Unpickler.load; not in its stubs)

    def find_class(self, module: str, name: str) -> Any:
        built = _BUILT.get((module, name))
        if built is None and module == "torch":
            built = _torch_global(name)
        return built if built is not None else placeholder(module, name)

    def load_build(self) -> None:
        self.stack.pop()  # the state: never applied
        target = self.stack[-1]
        if not isinstance(target, (Inert, collections.OrderedDict)):
            raise pickle.UnpicklingError(f"setting the state of a {type(target).__name__} is refused")

    dispatch[pickle.BUILD[0]] = load_build


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """`pickle.load` restricted the same way (torch's legacy format reads its headers with it)."""
    return Unpickler(file, **kwargs).load()


RESTRICTED = types.ModuleType("streamer_restricted_pickle")
"""What `torch.load` is given as its `pickle_module`."""
RESTRICTED.Unpickler = Unpickler  # type: ignore[attr-defined]  # a module built at run time
RESTRICTED.load = load  # type: ignore[attr-defined]


def _records(path: Path) -> list[str] | None:
    """The records of a zip-format torch file, read by torch's own zip reader (the one
    torch.load uses, so both see the same archive); None when it is not one."""
    try:
        return list(torch._C.PyTorchFileReader(str(path)).get_all_records())
    except RuntimeError:
        return None


def read_checkpoint(path: Path) -> Any:
    """The object pickled in a torch file, tensors on the CPU, no pickled code run.

    Zip-format files are memory-mapped (entries that are never used are never read).
    Raises ModelError for a TorchScript archive or a file torch cannot read.
    """
    path = Path(path)
    records = _records(path) if path.is_file() else None
    if records is not None and "constants.pkl" in records:
        raise ModelError(f"{path} is a TorchScript archive, not a checkpoint; refused (it would run code)")
    try:
        return torch.load(
            path, map_location="cpu", pickle_module=RESTRICTED, weights_only=False, mmap=records is not None
        )
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a truncated or foreign file
        raise ModelError(f"cannot read weights {path} (truncated, corrupt or not a checkpoint): {exc}") from None
