from dockwright.buildkit.pb import stat_pb2 as _stat_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Packet(_message.Message):
    __slots__ = ("type", "stat", "ID", "data")
    class PacketType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PACKET_STAT: _ClassVar[Packet.PacketType]
        PACKET_REQ: _ClassVar[Packet.PacketType]
        PACKET_DATA: _ClassVar[Packet.PacketType]
        PACKET_FIN: _ClassVar[Packet.PacketType]
        PACKET_ERR: _ClassVar[Packet.PacketType]
    PACKET_STAT: Packet.PacketType
    PACKET_REQ: Packet.PacketType
    PACKET_DATA: Packet.PacketType
    PACKET_FIN: Packet.PacketType
    PACKET_ERR: Packet.PacketType
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STAT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: Packet.PacketType
    stat: _stat_pb2.Stat
    ID: int
    data: bytes
    def __init__(self, type: _Optional[_Union[Packet.PacketType, str]] = ..., stat: _Optional[_Union[_stat_pb2.Stat, _Mapping]] = ..., ID: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
