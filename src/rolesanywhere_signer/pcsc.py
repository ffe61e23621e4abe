"""Asking a PIV card directly over PC/SC what a PKCS#11 module cannot tell us.

OpenSC reports no "PIN count low" flag for PIV cards, so after a refused PIN we ask the card
itself: SELECT the PIV application, then VERIFY with an empty body, which costs no attempt and
answers 63Cx (x tries left), 6983 (locked) or 9000 (verified). ``doctor`` also reads a slot's
PIN and touch policy with YubiKey's GET METADATA.

This is a few calls into libpcsclite through ctypes (the library the PKCS#11 modules already
use; no extra dependency), imported only on those paths. Everything here is best effort: any
failure gives ``None``, never an exception, because it only decorates a message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PIV_AID = bytes.fromhex("a000000308")
SELECT_PIV = bytes.fromhex("00a4040005") + PIV_AID
VERIFY_STATUS = bytes.fromhex("0020008000")
GET_SERIAL = bytes.fromhex("00f8000000")
SCARD_SCOPE_SYSTEM = 2
SCARD_SHARE_SHARED = 2
SCARD_PROTOCOL_ANY = 3
SCARD_LEAVE_CARD = 0
#: PC/SC calls wait at most this long for a card busy in another process's transaction
MAX_READERS_BYTES = 65536

# pcsc-lite on Linux: DWORD and LONG are C longs, SCARDCONTEXT/SCARDHANDLE too
_DWORD = ctypes.c_ulong
_LONG = ctypes.c_long


class _IoRequest(ctypes.Structure):
    _fields_ = [("dwProtocol", _DWORD), ("cbPciLength", _DWORD)]


_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL | None:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("pcsclite") or "libpcsclite.so.1"
        try:
            _lib = ctypes.CDLL(name)
        except OSError:
            return None
    return _lib


@dataclass(frozen=True)
class PinStatus:
    """What VERIFY-without-a-PIN said: tries left (0 = locked), or already verified."""

    tries_left: int | None
    verified: bool = False


@dataclass(frozen=True)
class SlotPolicy:
    pin_policy: str
    touch_policy: str


class _Card:
    def __init__(self, lib: ctypes.CDLL, handle: _LONG, protocol: int) -> None:
        self._lib = lib
        self.handle = handle
        self._pci = _IoRequest(protocol, ctypes.sizeof(_IoRequest))

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one APDU; follow 61xx with GET RESPONSE. Returns (data, status word)."""
        data = b""
        while True:
            buf = ctypes.create_string_buffer(4096)
            n = _DWORD(len(buf))
            rc = self._lib.SCardTransmit(
                self.handle, ctypes.byref(self._pci), apdu, _DWORD(len(apdu)), None, buf, ctypes.byref(n)
            )
            if rc != 0 or n.value < 2:
                raise OSError(f"SCardTransmit failed ({rc & 0xFFFFFFFF:#x})")
            resp = buf.raw[: n.value]
            data += resp[:-2]
            sw = int.from_bytes(resp[-2:], "big")
            if sw >> 8 != 0x61:
                return data, sw
            apdu = bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF])


@contextmanager
def _context() -> Iterator[tuple[ctypes.CDLL, _LONG]]:
    lib = _library()
    if lib is None:
        raise OSError("libpcsclite is not installed")
    ctx = _LONG()
    rc = lib.SCardEstablishContext(_DWORD(SCARD_SCOPE_SYSTEM), None, None, ctypes.byref(ctx))
    if rc != 0:
        raise OSError(f"no PC/SC service ({rc & 0xFFFFFFFF:#x})")
    try:
        yield lib, ctx
    finally:
        lib.SCardReleaseContext(ctx)


def readers() -> list[str]:
    """The PC/SC reader names ([] when there is no service or no reader)."""
    try:
        with _context() as (lib, ctx):
            return _readers(lib, ctx)
    except OSError:
        return []


def _readers(lib: ctypes.CDLL, ctx: _LONG) -> list[str]:
    size = _DWORD(0)
    if lib.SCardListReaders(ctx, None, None, ctypes.byref(size)) != 0 or not 0 < size.value <= MAX_READERS_BYTES:
        return []
    buf = ctypes.create_string_buffer(size.value)
    if lib.SCardListReaders(ctx, None, buf, ctypes.byref(size)) != 0:
        return []
    return [r.decode("utf-8", "replace") for r in buf.raw[: size.value].split(b"\0") if r]


@contextmanager
def _connect(lib: ctypes.CDLL, ctx: _LONG, reader: str) -> Iterator[_Card]:
    handle = _LONG()
    proto = _DWORD()
    rc = lib.SCardConnect(
        ctx,
        reader.encode(),
        _DWORD(SCARD_SHARE_SHARED),
        _DWORD(SCARD_PROTOCOL_ANY),
        ctypes.byref(handle),
        ctypes.byref(proto),
    )
    if rc != 0:
        raise OSError(f"SCardConnect failed ({rc & 0xFFFFFFFF:#x})")
    try:
        lib.SCardBeginTransaction(handle)
        try:
            yield _Card(lib, handle, proto.value)
        finally:
            lib.SCardEndTransaction(handle, _DWORD(SCARD_LEAVE_CARD))
    finally:
        lib.SCardDisconnect(handle, _DWORD(SCARD_LEAVE_CARD))


def _piv_cards(serial: str | None) -> Iterator[_Card]:
    """Every reader holding a PIV card (the one with YubiKey serial ``serial`` if several)."""
    with _context() as (lib, ctx):
        found = []
        for reader in _readers(lib, ctx):
            try:
                with _connect(lib, ctx, reader) as card:
                    _, sw = card.transmit(SELECT_PIV)
                    if sw != 0x9000:
                        continue
                    data, sw = card.transmit(GET_SERIAL)
                    found.append(
                        (reader, str(int.from_bytes(data, "big")) if sw == 0x9000 and len(data) == 4 else None)
                    )
            except OSError:
                continue
        if len(found) > 1 and serial:
            found = [f for f in found if f[1] is not None and f[1] in serial] or found
        if len(found) != 1:
            return  # none, or several we cannot tell apart: better no answer than a wrong one
        with _connect(lib, ctx, found[0][0]) as card:
            _, sw = card.transmit(SELECT_PIV)
            if sw == 0x9000:
                yield card


def pin_status(serial: str | None = None) -> PinStatus | None:
    """The PIV PIN counter, without spending an attempt; None when it cannot be asked."""
    try:
        for card in _piv_cards(serial):
            _, sw = card.transmit(VERIFY_STATUS)
            if sw == 0x9000:
                return PinStatus(None, verified=True)
            if sw & 0xFFF0 == 0x63C0:
                return PinStatus(sw & 0x0F)
            if sw == 0x6983:
                return PinStatus(0)
    except OSError:
        return None
    return None


_PIN_POLICIES = {0: "default", 1: "never", 2: "once", 3: "always"}
_TOUCH_POLICIES = {0: "default", 1: "never", 2: "always", 3: "cached"}


def slot_policy(slot: int, serial: str | None = None) -> SlotPolicy | None:
    """A YubiKey slot's PIN and touch policy (GET METADATA, firmware 5.3+); None if not said."""
    try:
        for card in _piv_cards(serial):
            data, sw = card.transmit(bytes([0x00, 0xF7, 0x00, slot, 0x00]))
            if sw != 0x9000:
                return None
            i = 0
            while i + 2 <= len(data):
                tag, n = data[i], data[i + 1]
                value = data[i + 2 : i + 2 + n]
                if tag == 0x02 and len(value) == 2:
                    return SlotPolicy(_PIN_POLICIES.get(value[0], "unknown"), _TOUCH_POLICIES.get(value[1], "unknown"))
                i += 2 + n
    except OSError:
        return None
    return None


def has_object(tag: int, serial: str | None = None) -> bool:
    """Whether a PIV data object (e.g. 5FFF01, the f9 attestation certificate) is on the card."""
    tag_bytes = tag.to_bytes(3, "big")
    try:
        for card in _piv_cards(serial):
            data, sw = card.transmit(bytes([0x00, 0xCB, 0x3F, 0xFF, 5, 0x5C, 3]) + tag_bytes + b"\x00")
            return sw == 0x9000 and len(data) > 4
    except OSError:
        return False
    return False
