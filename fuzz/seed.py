#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/<target>/ from the repository's own vectors:
the client frames of protocol-fixtures/, the Rails cookie vectors of
src/auth/rails/vectors/vectors.json, and the reference app's JWTs. Run from the
repository root; it only adds files (named by content hash)."""
import base64, glob, hashlib, json, os, struct

def put(target, data):
    d = os.path.join("fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)

def masked(first, payload, mask=b"\x37\xfa\x21\x3d"):
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))

texts = []
for path in sorted(glob.glob("protocol-fixtures/*.jsonl")):
    for line in open(path):
        e = json.loads(line)
        if e.get("dir") == "send" and e.get("kind") == "frame" and e.get("opcode") == "text":
            texts.append(e["data"].encode())
texts = sorted(set(texts))
for t in texts:
    put("command_decoder", t)
    put("frame_parser", masked(0x81, t))
put("frame_parser", masked(0x89, b"barrier") + masked(0x88, struct.pack(">H", 1000) + b"bye"))
if texts:
    t = texts[0]
    put("frame_parser", masked(0x01, t[:5]) + masked(0x8A, b"") + masked(0x80, t[5:]))
# assembler: head byte (FIN 0x80 | opcode 0 cont, 1 text, 2 binary, 3 close, 4 ping,
# 5 pong), length byte, payload; see ferrocable::fuzzing::assembler.
def af(head, payload):
    return bytes([head, len(payload)]) + payload
for t in texts[:3]:
    put("assembler", af(0x81, t[:31]))
put("assembler", af(0x01, b"hel") + af(0x84, b"p") + af(0x85, b"") + af(0x00, b"lo")
    + af(0x80, b"!") + af(0x83, struct.pack(">H", 1000) + b"bye"))
put("assembler", af(0x02, b"\x00\x01") + af(0x01, b"x"))
put("assembler", af(0x80, b"orphan"))
put("assembler", af(0x01, b"a" * 31) + af(0x00, b"b" * 31) + af(0x80, b"c" * 31))
put("assembler", af(0x83, struct.pack(">H", 1000) + b"\xff"))
put("assembler", af(0x83, struct.pack(">H", 1005)))
put("command_decoder", b'{"command":"subscribe","identifier":"' + b'[' * 200 + b'"}')

vectors = json.load(open("src/auth/rails/vectors/vectors.json"))
for case in vectors["cases"]:
    for read in case["reads"][:1]:
        put("cookie", read["header"].encode())
    raw = case["raw"]
    if case["kind"] == "signed":
        data = raw.split("--")[0]
        try:
            payload = base64.b64decode(data)
        except Exception:
            continue
        put("cookie", payload)
        try:
            env = json.loads(payload)
            msg = base64.b64decode(env["_rails"]["message"])
        except Exception:
            msg = payload
        if msg.startswith(b"\x04\x08"):
            put("marshal_parser", msg)
for m in [b"\x04\x08i\x06", b"\x04\x08I\"\x061\x06:\x06ET", b"\x04\x08[\x07i\x06i\x07",
          b"\x04\x08{\x06I\"\x0cuser_id\x06:\x06ETi\x06", b"\x04\x080", b"\x04\x08T", b"\x04\x08F",
          b"\x04\x08l+\x07\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00"]:
    put("marshal_parser", m)

for token in [
    "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.oR4WNDTKjoCiYjWk7luSh_c4d1moIdq5mm3X4eDGGDc",
    "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoyLCJleHAiOjE3OTU4MzE5Mzl9.TvHDa1Skz7xVuZ-8zhKVW5Y_OjgJki9HuloZf_ibWHo",
    "eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoxfQ.",
]:
    for which in range(3):
        put("jwt", bytes([which]) + token.encode())
