"""WeCom callback crypto (the WXBizMsgCrypt scheme).

Signature: lower-case hex SHA-1 over the four strings token, timestamp, nonce and the
ciphertext, sorted and joined. Ciphertext: base64 of AES-256-CBC (key = base64 of the 43-char
EncodingAESKey, IV = key[:16]) over ``random(16) | len(msg) as uint32 BE | msg | receiveid``,
padded PKCS#7-style to a multiple of 32 bytes (pad values 1..32, not the usual 16).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from typing import Any

from Crypto.Cipher import AES  # nosec B413 - this is pycryptodome (maintained), not PyCrypto

BLOCK = 32  # WeCom pads to 32-byte blocks, not AES's 16
_PADS = [bytes([n]) * n for n in range(BLOCK + 1)]  # _PADS[n]: the padding of value n


class CryptoError(ValueError):
    """A callback that cannot be trusted or read. ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    parts = sorted([token, timestamp, nonce, encrypted])
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()  # nosec B324 - WeCom's scheme mandates SHA-1


def _pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK
    return data + _PADS[n]


def _unpad(data: bytes) -> bytes:
    if not data:
        raise CryptoError("bad_padding", "decrypted payload is empty")
    n = data[-1]
    if not 1 <= n <= BLOCK or n > len(data) or not data.endswith(_PADS[n]):
        raise CryptoError("bad_padding", "decrypted payload has invalid padding")
    return data[:-n]


def aes_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError("EncodingAESKey is not valid base64") from exc
    if len(key) != 32:  # pragma: no cover - 43 valid base64 chars always give 32 bytes
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def _cbc_decrypt(ecb: Any, iv: bytes, data: bytes) -> bytes:
    """AES-CBC decryption as ECB decryption of every block, XORed with the block before it (the
    IV before the first). One ECB object serves every message; a CBC object carries state from
    one message to the next, so it would have to be made anew for each."""
    blocks = ecb.decrypt(data)
    chained = int.from_bytes(blocks, "big") ^ int.from_bytes(iv + data[:-16], "big")
    return chained.to_bytes(len(data), "big")


class WXBizMsgCrypt:
    """Verify, decrypt and encrypt WeCom callback payloads for one (token, key, receiveid)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self._token = token
        self._key = aes_key(encoding_aes_key)
        self._receive_id = receive_id
        self._receive_id_bytes = receive_id.encode("utf-8")
        self._ecb: Any = None
        self._ecb_key = b""

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = signature(self._token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected.encode(), msg_signature.lower().encode()):
            raise CryptoError("bad_signature", "msg_signature does not match")

    def decrypt(self, encrypted: str) -> str:
        """Decrypt a base64 ciphertext and return the message; checks padding and receiveid."""
        message, _ = self.decrypt_from(encrypted)
        return message

    def decrypt_from(self, encrypted: str, accept: Callable[[str], bool] | None = None) -> tuple[str, str]:
        """Decrypt, and return the message and its receiveid. Without ``accept`` the receiveid must
        be this instance's; with it, any receiveid ``accept`` takes (a service provider's data
        callbacks carry the corp's id, one of many)."""
        try:
            raw = binascii.a2b_base64(encrypted, strict_mode=True)
        except ValueError as exc:  # binascii.Error, or a str that is not ASCII
            raise CryptoError("bad_base64", "ciphertext is not valid base64") from exc
        if not raw or len(raw) % 16:
            raise CryptoError("bad_ciphertext", "ciphertext length is not a multiple of 16")
        key = self._key
        if self._ecb_key is not key:  # made once per key (tests swap _key on an instance)
            self._ecb, self._ecb_key = AES.new(key, AES.MODE_ECB), key
        plain = _unpad(_cbc_decrypt(self._ecb, key[:16], raw))
        if len(plain) < 20:
            raise CryptoError("bad_ciphertext", "decrypted payload is too short")
        end = 20 + int.from_bytes(plain[16:20], "big")
        if end > len(plain):
            raise CryptoError("bad_ciphertext", "message length exceeds payload")
        if accept is None:
            if not hmac.compare_digest(plain[end:], self._receive_id_bytes):
                raise CryptoError("bad_receiveid", "receiveid does not match the CorpID")
            receive_id = self._receive_id
        else:
            try:
                receive_id = plain[end:].decode("utf-8")
            except UnicodeDecodeError:
                receive_id = ""
            if not receive_id or not accept(receive_id):
                raise CryptoError("bad_receiveid", "receiveid is not a corp this app serves")
        try:
            return plain[20:end].decode("utf-8"), receive_id
        except UnicodeDecodeError as exc:
            raise CryptoError("bad_encoding", "message is not valid UTF-8") from exc

    def verify_and_decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> str:
        self.verify(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def encrypt(self, message: str, random16: bytes | None = None) -> str:
        """Encrypt a message as WeCom does; ``random16`` fixed only for test vectors."""
        rnd = os.urandom(16) if random16 is None else random16
        if len(rnd) != 16:
            raise ValueError("random16 must be 16 bytes")
        body = message.encode("utf-8")
        plain = rnd + struct.pack(">I", len(body)) + body + self._receive_id.encode("utf-8")
        cipher = AES.new(self._key, AES.MODE_CBC, self._key[:16]).encrypt(_pad(plain))
        return base64.b64encode(cipher).decode("ascii")

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return signature(self._token, timestamp, nonce, encrypted)
