#!/usr/bin/env python3
"""Writes the small gzip / IDX / CSV fixtures in Tests/Fixtures/data (used by LatheDataTests).

Run from the repository root: python3 Tools/reference/make_data_fixtures.py
Needs Python 3 and the `gzip` command; the output is deterministic.
"""
import gzip, os, random, struct, subprocess, zlib

out = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures", "data")
os.makedirs(out, exist_ok=True)
os.chdir(out)
random.seed(7)
words = ("the of and to a in is that it was for on are with as his they be at one have this from or had by hot "
         "word but what some we can out other were all there when up use your how said an each she which do their "
         "time if will way about many then them write would like so these her long make thing see him two has look "
         "more day could go come did number sound no most people my over know water than call first who may down "
         "side been now find").split()
lines = [" ".join(random.choice(words) for _ in range(random.randint(3, 12))) + f" {i}" for i in range(900)]
text = ("\n".join(lines) + "\n").encode()
open("words.txt", "wb").write(text)
# The gzip command (dynamic Huffman blocks); -n: no name or time stamp, so the bytes are reproducible.
subprocess.run("gzip -9 -n -c words.txt > words.txt.gz", shell=True, check=True)
open("words-fast.txt.gz", "wb").write(gzip.compress(text, compresslevel=1, mtime=0))   # Python's gzip module
open("words-stored.gz", "wb").write(gzip.compress(text, compresslevel=0, mtime=0))     # stored blocks
open("hello.txt.gz", "wb").write(gzip.compress(b"hello, hello, hello world\n", mtime=0))  # fixed Huffman block
rnd = bytes(random.getrandbits(8) for _ in range(5000))  # incompressible: stored block, every byte value
open("random.bin", "wb").write(rnd)
open("random.bin.gz", "wb").write(gzip.compress(rnd, mtime=0))
a = gzip.compress(b"first member\n", mtime=0)
b = gzip.compress(b"second member\n", mtime=0)
open("multi.gz", "wb").write(a + b + b"\0\0\0\0")  # two members and zero padding
open("empty.gz", "wb").write(gzip.compress(b"", mtime=0))
# Every optional header field: FTEXT, FHCRC, FEXTRA, FNAME, FCOMMENT.
payload = b"header fields test\n" * 3
c = zlib.compressobj(6, zlib.DEFLATED, -15)
raw = c.compress(payload) + c.flush()
hdr = bytes([0x1F, 0x8B, 8, 0x1F]) + struct.pack("<I", 0) + bytes([0, 3])
hdr += struct.pack("<H", 4) + b"AB\x00\x01" + b"name.txt\x00" + b"a comment\x00"
hdr += struct.pack("<H", zlib.crc32(hdr) & 0xFFFF)
open("fields.gz", "wb").write(hdr + raw + struct.pack("<II", zlib.crc32(payload), len(payload)))
# Tiny IDX files: 3 images of 4x5 bytes (i * 7 mod 256), labels 2, 0, 1.
imgs = bytes((i * 7) % 256 for i in range(3 * 4 * 5))
open("tiny-images-idx3-ubyte.gz", "wb").write(gzip.compress(struct.pack(">IIII", 0x803, 3, 4, 5) + imgs, mtime=0))
open("tiny-labels-idx1-ubyte.gz", "wb").write(gzip.compress(struct.pack(">II", 0x801, 3) + bytes([2, 0, 1]), mtime=0))
csv = "a,b,c,label\n1,2,3,0\n4.5,-5,6e1,1\n\n7,8,9,2\n"
open("small.csv", "w").write(csv)
open("small.csv.gz", "wb").write(gzip.compress(csv.encode(), mtime=0))
