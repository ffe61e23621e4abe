"""A virtual YubiKey PIV card for the tests: speaks vpcd's TCP protocol, answers PIV APDUs.

Run as ``python emulator.py --port PORT --state FILE`` inside the network namespace of the
pcscd it plugs into (vpcd listens there; the card connects to it). All card state lives in
the JSON ``--state`` file, rewritten after every change, so a test can read the counters and
"remove" the card (stop the process) and "insert" it again (start it with the same file).

vpcd framing: a 2-byte big-endian length, then the payload. A 1-byte payload is a control
code (0 off, 1 on, 2 reset, 4 get ATR; only the ATR is answered); anything longer is a
command APDU answered with a response APDU.

The PIV subset is what OpenSC's opensc-pkcs11.so and Yubico's libykcs11.so use: SELECT,
GET/PUT DATA, VERIFY (status query, P1=FF reset), CHANGE REFERENCE, RESET RETRY, GENERAL
AUTHENTICATE (raw RSA, ECDSA P-256/P-384, 3DES management key), GENERATE ASYMMETRIC,
command chaining and GET RESPONSE, and YubiKey's GET VERSION, GET SERIAL, GET METADATA,
ATTEST, IMPORT KEY and SET MGMKEY. Per-slot PIN policy (never/once/always) and touch delay.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.x509.oid import NameOID

try:  # cryptography >= 43 keeps 3DES among the "decrepit" algorithms
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # type: ignore[no-redef]

# a YubiKey 5 ATR: OpenSC recognises "YubiKey" in its historical bytes, ykpiv its model
ATR = bytes.fromhex("3bfd1300008131fe158073c021c057597562694b657940")
PIV_AID = bytes.fromhex("a000000308")
MGMT_AID = bytes.fromhex("a000000527471117")
DEFAULT_MGM = bytes.fromhex("010203040506070801020304050607080102030405060708")
ALGOS = {0x07: ("rsa", 2048), 0x06: ("rsa", 1024), 0x11: ("ec", 256), 0x14: ("ec", 384)}
PIN_POLICY = {"default": 0, "never": 1, "once": 2, "always": 3}
TOUCH_POLICY = {"default": 0, "never": 1, "always": 2, "cached": 3}
# slot -> certificate object
SLOT_OBJECTS = {0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101, 0xF9: 0x5FFF01}
SLOT_OBJECTS.update({0x82 + i: 0x5FC10D + i for i in range(20)})
DEFAULT_PIN_POLICY = {0x9A: "once", 0x9C: "always", 0x9D: "once", 0x9E: "never", 0xF9: "never"}

SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"
SW_SECURITY = b"\x69\x82"
SW_BLOCKED = b"\x69\x83"
SW_WRONG_DATA = b"\x6a\x80"
SW_BAD_P1P2 = b"\x6a\x86"
SW_INS = b"\x6d\x00"


# ---------------------------------------------------------------- BER-TLV


def tlv(tag: int, value: bytes) -> bytes:
    t = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    n = len(value)
    if n < 0x80:
        ln = bytes([n])
    elif n < 0x100:
        ln = bytes([0x81, n])
    else:
        ln = bytes([0x82]) + n.to_bytes(2, "big")
    return t + ln + value


def parse_tlv(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:  # multi-byte tag
            while True:
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        n = data[i]
        i += 1
        if n == 0x81:
            n = data[i]
            i += 1
        elif n == 0x82:
            n = int.from_bytes(data[i : i + 2], "big")
            i += 2
        out.append((tag, data[i : i + n]))
        i += n
    return out


# ---------------------------------------------------------------- card state


def new_state(
    *, serial: int = 12345678, version: str = "5.4.3", pin: str = "123456", puk: str = "12345678"
) -> dict[str, Any]:
    """A fresh card: default PIN/PUK/management key, CHUID and CCC, an attestation key in f9."""
    f9 = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Virtual Yubico PIV Attestation")])
    now = time.time()
    import datetime

    start = datetime.datetime.fromtimestamp(now - 86400, datetime.timezone.utc)
    f9_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(f9.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(f9, hashes.SHA256())
    )
    chuid = (
        tlv(0x30, bytes.fromhex("d4e739da739ced39ce739d836858210842108421c84210c3eb"))
        + tlv(0x34, os.urandom(16))
        + tlv(0x35, b"20301231")
        + tlv(0x3E, b"")
        + tlv(0xFE, b"")
    )
    ccc = (
        bytes.fromhex("f015a000000116ff02")
        + os.urandom(14)
        + bytes.fromhex("f10121f20121f300f40100f50110f600f700fa00fb00fc00fd00fe00")
    )
    state: dict[str, Any] = {
        "serial": serial,
        "version": version,
        "pin": pin,
        "puk": puk,
        "pin_retries": 3,
        "pin_max": 3,
        "puk_retries": 3,
        "puk_max": 3,
        "mgm": DEFAULT_MGM.hex(),
        "touch_delay": 0.0,
        "objects": {"5fc102": chuid.hex(), "5fc107": ccc.hex()},
        "slots": {},
        "counters": {"verify": 0, "verify_status": 0, "sign": 0, "select": 0, "connects": 0, "loads": 0},
    }
    put_key(state, 0xF9, f9, pin_policy="never", origin="imported")
    state["objects"]["5fff01"] = cert_object(f9_cert.public_bytes(serialization.Encoding.DER)).hex()
    return state


def cert_object(der: bytes) -> bytes:
    """The PIV certificate container: 70 certificate, 71 certinfo (not compressed), FE LRC."""
    return tlv(0x70, der) + tlv(0x71, b"\x00") + tlv(0xFE, b"")


def put_key(
    state: dict[str, Any],
    slot: int,
    key: Any,
    *,
    pin_policy: str | None = None,
    touch_policy: str = "never",
    origin: str = "imported",
) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    state["slots"][f"{slot:02x}"] = {
        "key": pem.decode(),
        "pin_policy": pin_policy or DEFAULT_PIN_POLICY.get(slot, "once"),
        "touch_policy": touch_policy,
        "origin": origin,
    }


def put_certificate(state: dict[str, Any], slot: int, der: bytes) -> None:
    state["objects"][f"{SLOT_OBJECTS[slot]:06x}"] = cert_object(der).hex()


def load_state(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


# ---------------------------------------------------------------- the card


def _algo_of(key: Any) -> int:
    if isinstance(key, rsa.RSAPrivateKey):
        return 0x07 if key.key_size == 2048 else 0x06
    return 0x11 if key.curve.key_size == 256 else 0x14


def _public_tlv(key: Any) -> bytes:
    pub = key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        return tlv(0x81, nums.n.to_bytes(pub.key_size // 8, "big")) + tlv(0x82, nums.e.to_bytes(3, "big"))
    return tlv(0x86, pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


class Card:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = load_state(path)
        self._keys: dict[str, Any] = {}
        self.power_on()

    def reload(self) -> None:
        """A new card in the same reader (SIGHUP): the state file was replaced by the test."""
        self.state = load_state(self.path)
        self._keys.clear()
        self.power_on()
        self.state["counters"]["loads"] += 1
        self.save()

    # ---- session state, lost on power off / reset
    def power_on(self) -> None:
        self.selected = True  # PIV is the default application
        self.pin_ok = False
        self.mgm_ok = False
        self.witness: bytes | None = None
        self.chain = b""
        self.pending = b""

    def save(self) -> None:
        save_state(self.path, self.state)

    def key(self, slot: int) -> Any:
        name = f"{slot:02x}"
        entry = self.state["slots"].get(name)
        if entry is None:
            return None
        cached = self._keys.get(name)
        if cached is None or cached[0] != entry["key"]:
            cached = (entry["key"], serialization.load_pem_private_key(entry["key"].encode(), None))
            self._keys[name] = cached
        return cached[1]

    # ---- APDU dispatch
    def apdu(self, raw: bytes) -> bytes:
        if len(raw) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = raw[:4]
        data = b""
        if len(raw) > 5:
            lc = raw[4]
            data = raw[5 : 5 + lc]
        if ins == 0xC0:  # GET RESPONSE
            return self._respond(self.pending)
        if cla & 0x10:  # command chaining: keep the part, answer when the last one arrives
            self.chain += data
            return SW_OK
        if self.chain:
            data = self.chain + data
            self.chain = b""
        if ins == 0xA4:
            return self._select(p1, data)
        if not self.selected:
            return SW_INS
        handler = {
            0xCB: self._get_data,
            0xDB: self._put_data,
            0x20: self._verify,
            0x24: self._change_reference,
            0x2C: self._reset_retry,
            0x87: self._authenticate,
            0x47: self._generate,
            0xFD: self._version,
            0xF8: self._serial,
            0xF7: self._metadata,
            0xF9: self._attest,
            0xFE: self._import,
            0xFF: self._set_mgm,
        }.get(ins)
        if handler is None:
            return SW_INS
        return handler(p1, p2, data)

    def _respond(self, body: bytes) -> bytes:
        """Short APDUs carry at most 256 bytes: the rest waits for GET RESPONSE (61xx)."""
        if len(body) <= 256:
            self.pending = b""
            return body + SW_OK
        self.pending = body[256:]
        left = len(self.pending)
        return body[:256] + bytes([0x61, left if left < 256 else 0])

    def _select(self, p1: int, aid: bytes) -> bytes:
        self.state["counters"]["select"] += 1
        if p1 == 0x04 and aid[:5] == PIV_AID:
            self.selected = True
            prop = tlv(0x4F, bytes.fromhex("000010000100")) + tlv(0x79, tlv(0x4F, PIV_AID))
            return self._respond(tlv(0x61, prop))
        self.selected = False
        self.pin_ok = False
        self.mgm_ok = False
        if aid == MGMT_AID:
            return self._respond(b"")
        return SW_NOT_FOUND

    # ---- data objects
    def _get_data(self, p1: int, p2: int, data: bytes) -> bytes:
        items = dict(parse_tlv(data))
        tag = items.get(0x5C, b"")
        if tag == b"\x7e":  # discovery: PIV AID, PIN usage policy "PIV PIN only"
            disc = tlv(0x4F, bytes.fromhex("a000000308000010000100")) + tlv(0x5F2F, b"\x40\x00")
            return self._respond(tlv(0x7E, disc))
        value = self.state["objects"].get(tag.hex())
        if value is None:
            return SW_NOT_FOUND
        return self._respond(tlv(0x53, bytes.fromhex(value)))

    def _put_data(self, p1: int, p2: int, data: bytes) -> bytes:
        if not self.mgm_ok:
            return SW_SECURITY
        items = parse_tlv(data)
        if len(items) < 2 or items[0][0] != 0x5C or items[1][0] != 0x53:
            return SW_WRONG_DATA
        tag = items[0][1].hex()
        if items[1][1]:
            self.state["objects"][tag] = items[1][1].hex()
        else:
            self.state["objects"].pop(tag, None)
        self.save()
        return SW_OK

    # ---- PIN and PUK
    def _verify(self, p1: int, p2: int, data: bytes) -> bytes:
        if p2 != 0x80:
            return SW_NOT_FOUND
        if p1 == 0xFF:  # reset the verified state
            self.pin_ok = False
            return SW_OK
        if not data:  # status query: verified, or the tries left
            self.state["counters"]["verify_status"] += 1
            self.save()
            if self.pin_ok:
                return SW_OK
            return self._tries_sw("pin")
        self.state["counters"]["verify"] += 1
        result = self._check("pin", data)
        self.pin_ok = result == SW_OK
        self.save()
        return result

    def _tries_sw(self, which: str) -> bytes:
        left = self.state[f"{which}_retries"]
        return SW_BLOCKED if left == 0 else bytes([0x63, 0xC0 | left])

    def _check(self, which: str, padded: bytes) -> bytes:
        if self.state[f"{which}_retries"] == 0:
            return SW_BLOCKED
        if padded.rstrip(b"\xff") == self.state[which].encode():
            self.state[f"{which}_retries"] = self.state[f"{which}_max"]
            return SW_OK
        self.state[f"{which}_retries"] -= 1
        return self._tries_sw(which)

    def _change_reference(self, p1: int, p2: int, data: bytes) -> bytes:
        which = {0x80: "pin", 0x81: "puk"}.get(p2)
        if which is None or len(data) != 16:
            return SW_WRONG_DATA
        result = self._check(which, data[:8])
        if result == SW_OK:
            self.state[which] = data[8:].rstrip(b"\xff").decode()
        self.save()
        return result

    def _reset_retry(self, p1: int, p2: int, data: bytes) -> bytes:
        if len(data) != 16:
            return SW_WRONG_DATA
        result = self._check("puk", data[:8])
        if result == SW_OK:
            self.state["pin"] = data[8:].rstrip(b"\xff").decode()
            self.state["pin_retries"] = self.state["pin_max"]
        self.save()
        return result

    # ---- GENERAL AUTHENTICATE
    def _tdes(self) -> Cipher[Any]:
        return Cipher(TripleDES(bytes.fromhex(self.state["mgm"])), modes.ECB())

    def _authenticate(self, algo: int, slot: int, data: bytes) -> bytes:
        outer = dict(parse_tlv(data))
        if 0x7C not in outer:
            return SW_WRONG_DATA
        inner = dict(parse_tlv(outer[0x7C]))
        if slot == 0x9B:
            return self._mgm_auth(algo, inner)
        key = self.key(slot)
        if key is None:
            return SW_NOT_FOUND
        if algo != _algo_of(key):
            return SW_BAD_P1P2
        payload = inner.get(0x81)
        if payload is None:
            return SW_WRONG_DATA
        entry = self.state["slots"][f"{slot:02x}"]
        policy = entry["pin_policy"]
        if policy in ("once", "always") and not self.pin_ok:
            return SW_SECURITY
        if policy == "always":
            self.pin_ok = False  # one signature per VERIFY
        if entry["touch_policy"] in ("always", "cached") and self.state["touch_delay"]:
            time.sleep(float(self.state["touch_delay"]))  # the user touching the key
        self.state["counters"]["sign"] += 1
        self.save()
        if isinstance(key, rsa.RSAPrivateKey):
            nums = key.private_numbers()
            n = nums.public_numbers.n
            m = int.from_bytes(payload, "big")
            if m >= n:
                return SW_WRONG_DATA
            sig = pow(m, nums.d, n).to_bytes(key.key_size // 8, "big")
        else:
            size = key.curve.key_size // 8
            if len(payload) > size:
                return SW_WRONG_DATA
            digest = payload.rjust(size, b"\x00")  # same integer; standard ECDSA truncation done by the host
            algo_h = hashes.SHA256() if size == 32 else hashes.SHA384()
            sig = key.sign(digest, ec.ECDSA(utils.Prehashed(algo_h)))
        return self._respond(tlv(0x7C, tlv(0x82, sig)))

    def _mgm_auth(self, algo: int, inner: dict[int, bytes]) -> bytes:
        if algo != 0x03:
            return SW_BAD_P1P2
        if inner.get(0x80) == b"":  # step 1: the card's witness, encrypted
            self.witness = os.urandom(8)
            enc = self._tdes().encryptor()
            return self._respond(tlv(0x7C, tlv(0x80, enc.update(self.witness) + enc.finalize())))
        if 0x80 in inner and 0x81 in inner:  # step 2: decrypted witness + the host's challenge
            if self.witness is None or inner[0x80] != self.witness:
                self.witness = None
                return SW_SECURITY
            self.witness = None
            self.mgm_ok = True
            enc = self._tdes().encryptor()
            return self._respond(tlv(0x7C, tlv(0x82, enc.update(inner[0x81]) + enc.finalize())))
        return SW_WRONG_DATA

    # ---- keys
    def _generate(self, p1: int, slot: int, data: bytes) -> bytes:
        if not self.mgm_ok:
            return SW_SECURITY
        outer = dict(parse_tlv(data))
        if 0xAC not in outer:
            return SW_WRONG_DATA
        params = dict(parse_tlv(outer[0xAC]))
        algo = params.get(0x80, b"\x00")[0]
        if algo not in ALGOS:
            return SW_BAD_P1P2
        family, size = ALGOS[algo]
        key: Any = (
            rsa.generate_private_key(65537, int(size))
            if family == "rsa"
            else ec.generate_private_key(ec.SECP256R1() if size == 256 else ec.SECP384R1())
        )
        self._store_key(slot, key, params, origin="generated")
        return self._respond(tlv(0x7F49, _public_tlv(key)))

    def _store_key(self, slot: int, key: Any, params: dict[int, bytes], *, origin: str) -> None:
        pin = {v: k for k, v in PIN_POLICY.items()}.get(params.get(0xAA, b"\x00")[0], "default")
        touch = {v: k for k, v in TOUCH_POLICY.items()}.get(params.get(0xAB, b"\x00")[0], "default")
        put_key(
            self.state,
            slot,
            key,
            pin_policy=None if pin == "default" else pin,
            touch_policy="never" if touch == "default" else touch,
            origin=origin,
        )
        self.save()

    def _import(self, algo: int, slot: int, data: bytes) -> bytes:
        if not self.mgm_ok:
            return SW_SECURITY
        items = dict(parse_tlv(data))
        key: Any
        if algo in (0x06, 0x07):
            p, q, dp, dq, qinv = (int.from_bytes(items[t], "big") for t in (1, 2, 3, 4, 5))
            e = 65537
            d = pow(e, -1, (p - 1) * (q - 1))
            key = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qinv, rsa.RSAPublicNumbers(e, p * q)).private_key()
        elif algo in (0x11, 0x14):
            curve = ec.SECP256R1() if algo == 0x11 else ec.SECP384R1()
            key = ec.derive_private_key(int.from_bytes(items[6], "big"), curve)
        else:
            return SW_BAD_P1P2
        self._store_key(slot, key, items, origin="imported")
        return SW_OK

    def _set_mgm(self, p1: int, p2: int, data: bytes) -> bytes:
        if not self.mgm_ok:
            return SW_SECURITY
        if len(data) != 27 or data[:3] != b"\x03\x9b\x18":
            return SW_WRONG_DATA
        self.state["mgm"] = data[3:].hex()
        self.save()
        return SW_OK

    # ---- YubiKey extras
    def _version(self, p1: int, p2: int, data: bytes) -> bytes:
        return bytes(int(x) for x in self.state["version"].split(".")) + SW_OK

    def _serial(self, p1: int, p2: int, data: bytes) -> bytes:
        return int(self.state["serial"]).to_bytes(4, "big") + SW_OK

    def _metadata(self, p1: int, slot: int, data: bytes) -> bytes:
        if slot in (0x80, 0x81):
            which = "pin" if slot == 0x80 else "puk"
            default = self.state[which] == ("123456" if which == "pin" else "12345678")
            body = (
                tlv(0x01, b"\xff")
                + tlv(0x05, b"\x01" if default else b"\x00")
                + tlv(0x06, bytes([self.state[f"{which}_max"], self.state[f"{which}_retries"]]))
            )
            return self._respond(body)
        key = self.key(slot)
        if key is None:
            return SW_NOT_FOUND
        entry = self.state["slots"][f"{slot:02x}"]
        body = (
            tlv(0x01, bytes([_algo_of(key)]))
            + tlv(0x02, bytes([PIN_POLICY[entry["pin_policy"]], TOUCH_POLICY[entry["touch_policy"]]]))
            + tlv(0x03, b"\x01" if entry["origin"] == "generated" else b"\x02")
            + tlv(0x04, _public_tlv(key))
        )
        return self._respond(body)

    def _attest(self, slot: int, p2: int, data: bytes) -> bytes:
        """A certificate for a key made on the card, signed by the f9 attestation key."""
        import datetime

        key = self.key(slot)
        entry = self.state["slots"].get(f"{slot:02x}")
        if key is None or entry is None or slot == 0xF9:
            return SW_NOT_FOUND
        if entry["origin"] != "generated":
            return SW_WRONG_DATA  # a YubiKey attests only keys it made
        f9 = self.key(0xF9)
        f9_cert = x509.load_der_x509_certificate(dict(parse_tlv(bytes.fromhex(self.state["objects"]["5fff01"])))[0x70])
        start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"YubiKey PIV Attestation {slot:02x}")]))
            .issuer_name(f9_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=3650))
            .add_extension(
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier("1.3.6.1.4.1.41482.3.3"),
                    bytes(int(x) for x in self.state["version"].split(".")),
                ),
                critical=False,
            )
            .sign(f9, hashes.SHA256())
        )
        return self._respond(cert.public_bytes(serialization.Encoding.DER))


# ---------------------------------------------------------------- vpcd transport


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("vpcd closed the connection")
        buf += chunk
    return buf


def serve(port: int, state_path: Path, host: str = "127.0.0.1") -> None:
    card = Card(state_path)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # vpcd starts listening when pcscd loads the driver
    sock.settimeout(None)
    # vpcd writes the length and the APDU separately: without these each APDU waits ~40 ms
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    card.state["counters"]["connects"] += 1
    card.save()
    signal.signal(signal.SIGHUP, lambda signum, frame: card.reload())
    print("card connected", flush=True)
    while True:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        (n,) = struct.unpack(">H", _recv_exact(sock, 2))
        msg = _recv_exact(sock, n)
        if n == 1:
            code = msg[0]
            if code in (0, 1, 2):
                card.power_on()
            elif code == 4:
                sock.sendall(struct.pack(">H", len(ATR)) + ATR)
            continue
        try:
            resp = card.apdu(msg)
        except Exception as e:
            print(f"card error on {msg[:4].hex()}: {e!r}", file=sys.stderr, flush=True)
            resp = b"\x6f\x00"
        sock.sendall(struct.pack(">H", len(resp)) + resp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state", type=Path, required=True)
    args = ap.parse_args()
    try:
        serve(args.port, args.state)
    except (ConnectionError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
