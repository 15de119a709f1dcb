# Type stubs for memlens.records: Record behaves like a dataclass to type
# checkers (PEP 681), with class keywords frozen/order/kw_only/weakref.
from typing import Any, Callable, Dict, Tuple, Type, TypeVar, Union

from typing_extensions import dataclass_transform

_R = TypeVar("_R", bound="Record")

class _MissingType: ...

MISSING: _MissingType

@dataclass_transform(eq_default=True, order_default=False, kw_only_default=False,
                     frozen_default=False)
class Record:
    __match_args__: Tuple[str, ...]
    def __init_subclass__(cls, *, frozen: bool = ..., order: bool = ..., kw_only: bool = ...,
                          weakref: bool = ..., **kwargs: Any) -> None: ...
    def __replace__(self: _R, **changes: Any) -> _R: ...
    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]: ...

class Field:
    name: str
    type: Any
    default: Any
    kw_only: bool
    storage: str
    offset: int

def fields(class_or_instance: Union[Record, Type[Record]]) -> Tuple[Field, ...]: ...
def asdict(record: Record, *, dict_factory: Callable[[Any], Dict[str, Any]] = ...) -> Dict[str, Any]: ...
def astuple(record: Record, *, tuple_factory: Callable[[Any], Any] = ...) -> Tuple[Any, ...]: ...
def replace(record: _R, /, **changes: Any) -> _R: ...
