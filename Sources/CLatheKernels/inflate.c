// DEFLATE (RFC 1951) and gzip (RFC 1952) decoder. See include/lathe_inflate.h.
//
// Huffman codes are decoded with one lookup table indexed by the next FAST_BITS input bits;
// the rare longer codes fall back to a canonical bit-by-bit walk. Every read of input checks
// the remaining length and every write of output checks the capacity.
#include "lathe_inflate.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BITS 15      // longest Huffman code in DEFLATE
#define MAX_LITLEN 288   // literal/length alphabet incl. the two reserved symbols
#define MAX_DIST 32      // distance alphabet incl. the two reserved symbols
#define FAST_BITS 10

// A Huffman code: lookup table for codes of up to FAST_BITS bits, plus canonical counts and
// symbols (ordered by code) for the slow path.
typedef struct {
    // entry = symbol << 4 | length; length 0 means "longer code or no code": take the slow path.
    uint16_t fast[1 << FAST_BITS];
    uint16_t count[MAX_BITS + 1];
    uint16_t symbol[MAX_LITLEN];
} huffman;

typedef struct {
    const uint8_t *in;
    size_t in_len, in_pos;
    uint64_t bitbuf;   // bits not yet consumed, least significant first
    unsigned bitcnt;   // valid bits in bitbuf
    uint8_t *out;
    size_t out_len, out_cap;
    int can_grow;      // out was malloc'd here and may be realloc'd up to out_limit
    size_t out_limit;  // 0 = no limit
} state;

const char *lathe_inflate_strerror(int status) {
    switch (status) {
    case LATHE_INFLATE_OK: return "ok";
    case LATHE_INFLATE_TRUNCATED: return "compressed data ends unexpectedly (truncated file)";
    case LATHE_INFLATE_BAD_BLOCK_TYPE: return "invalid DEFLATE block type 3";
    case LATHE_INFLATE_BAD_STORED_LEN: return "stored block length check failed";
    case LATHE_INFLATE_BAD_CODE_LENGTHS: return "invalid Huffman code lengths";
    case LATHE_INFLATE_BAD_SYMBOL: return "invalid Huffman code or reserved symbol";
    case LATHE_INFLATE_BAD_DISTANCE: return "match distance too far back";
    case LATHE_INFLATE_OUTPUT_FULL: return "decompressed data exceeds the size limit";
    case LATHE_INFLATE_NO_MEMORY: return "out of memory";
    case LATHE_INFLATE_BAD_HEADER: return "not gzip data (bad magic, method or flags)";
    case LATHE_INFLATE_BAD_CRC: return "CRC-32 check failed (corrupt data)";
    case LATHE_INFLATE_BAD_SIZE: return "decompressed length differs from the gzip trailer";
    case LATHE_INFLATE_TRAILING_DATA: return "unexpected data after the last gzip member";
    default: return "unknown inflate error";
    }
}

// ---- bit input ------------------------------------------------------------------------------

static inline void refill(state *s) {
    while (s->bitcnt <= 56 && s->in_pos < s->in_len) {
        s->bitbuf |= (uint64_t)s->in[s->in_pos++] << s->bitcnt;
        s->bitcnt += 8;
    }
}

// Reads n <= 32 bits into *v. Returns 0 or LATHE_INFLATE_TRUNCATED.
static inline int getbits(state *s, unsigned n, uint32_t *v) {
    if (s->bitcnt < n) {
        refill(s);
        if (s->bitcnt < n) return LATHE_INFLATE_TRUNCATED;
    }
    *v = (uint32_t)(s->bitbuf & ((1ull << n) - 1));
    s->bitbuf >>= n;
    s->bitcnt -= n;
    return 0;
}

// Gives back whole unread bytes of the bit buffer so that in_pos points at the next byte
// after the partially consumed one.
static void align_to_byte(state *s) {
    unsigned drop = s->bitcnt & 7;
    s->bitbuf >>= drop;
    s->bitcnt -= drop;
    s->in_pos -= s->bitcnt / 8;
    s->bitbuf = 0;
    s->bitcnt = 0;
}

// ---- Huffman codes --------------------------------------------------------------------------

static inline unsigned reverse_bits(unsigned code, unsigned len) {
    unsigned r = 0;
    for (unsigned i = 0; i < len; i++) { r = (r << 1) | (code & 1); code >>= 1; }
    return r;
}

// Builds a code from n lengths (0 = unused symbol). Over-subscribed sets are an error;
// incomplete ones are accepted (unused patterns decode as errors).
static int build(huffman *h, const uint8_t *lengths, unsigned n) {
    uint16_t offs[MAX_BITS + 2];
    memset(h->count, 0, sizeof h->count);
    for (unsigned i = 0; i < n; i++) h->count[lengths[i]]++;
    int left = 1;
    for (unsigned len = 1; len <= MAX_BITS; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0) return LATHE_INFLATE_BAD_CODE_LENGTHS;
    }
    offs[1] = 0;
    for (unsigned len = 1; len <= MAX_BITS; len++) offs[len + 1] = (uint16_t)(offs[len] + h->count[len]);
    for (unsigned i = 0; i < n; i++)
        if (lengths[i]) h->symbol[offs[lengths[i]]++] = (uint16_t)i;

    memset(h->fast, 0, sizeof h->fast);
    // Canonical codes in order of (length, symbol); fill the table for the short ones.
    unsigned code = 0, index = 0;
    for (unsigned len = 1; len <= FAST_BITS; len++) {
        for (unsigned k = 0; k < h->count[len]; k++) {
            unsigned sym = h->symbol[index++];
            unsigned rev = reverse_bits(code++, len);
            uint16_t entry = (uint16_t)(sym << 4 | len);
            for (unsigned j = rev; j < (1u << FAST_BITS); j += 1u << len) h->fast[j] = entry;
        }
        code <<= 1;
    }
    return 0;
}

// Decodes one symbol. Returns the symbol (>= 0) or a negative status.
static inline int decode(state *s, const huffman *h) {
    if (s->bitcnt < MAX_BITS) refill(s);
    uint16_t e = h->fast[s->bitbuf & ((1u << FAST_BITS) - 1)];
    unsigned len = e & 15;
    if (len) {
        if (len > s->bitcnt) return LATHE_INFLATE_TRUNCATED;
        s->bitbuf >>= len;
        s->bitcnt -= len;
        return e >> 4;
    }
    // Slow path: walk the canonical code bit by bit.
    int code = 0, first = 0, index = 0;
    for (unsigned l = 1; l <= MAX_BITS; l++) {
        if (l > s->bitcnt) return LATHE_INFLATE_TRUNCATED;
        code |= (int)((s->bitbuf >> (l - 1)) & 1);
        int count = h->count[l];
        if (code - first < count) {
            s->bitbuf >>= l;
            s->bitcnt -= l;
            return h->symbol[index + (code - first)];
        }
        index += count;
        first += count;
        first <<= 1;
        code <<= 1;
    }
    return LATHE_INFLATE_BAD_SYMBOL;
}

// ---- output ---------------------------------------------------------------------------------

// Makes room for `extra` more bytes. Returns 0 or an error.
static int reserve(state *s, size_t extra) {
    if (extra <= s->out_cap - s->out_len) return 0;
    if (s->out_len > SIZE_MAX - extra) return LATHE_INFLATE_OUTPUT_FULL;
    size_t need = s->out_len + extra;
    if (!s->can_grow || (s->out_limit && need > s->out_limit)) return LATHE_INFLATE_OUTPUT_FULL;
    size_t cap = s->out_cap ? s->out_cap : 4096;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (s->out_limit && cap > s->out_limit) cap = s->out_limit;
    uint8_t *p = (uint8_t *)realloc(s->out, cap);
    if (!p) return LATHE_INFLATE_NO_MEMORY;
    s->out = p;
    s->out_cap = cap;
    return 0;
}

// ---- blocks ---------------------------------------------------------------------------------

static const uint16_t len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                      35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                      3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129,
                                       193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
                                       6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7,
                                       8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static int stored(state *s) {
    align_to_byte(s);
    if (s->in_len - s->in_pos < 4) { s->in_pos = s->in_len; return LATHE_INFLATE_TRUNCATED; }
    const uint8_t *p = s->in + s->in_pos;
    unsigned len = p[0] | (unsigned)p[1] << 8, nlen = p[2] | (unsigned)p[3] << 8;
    if (len != (~nlen & 0xffff)) return LATHE_INFLATE_BAD_STORED_LEN;
    s->in_pos += 4;
    if (s->in_len - s->in_pos < len) { s->in_pos = s->in_len; return LATHE_INFLATE_TRUNCATED; }
    int err = reserve(s, len);
    if (err) return err;
    memcpy(s->out + s->out_len, s->in + s->in_pos, len);
    s->in_pos += len;
    s->out_len += len;
    return 0;
}

static int codes(state *s, const huffman *lit, const huffman *dist) {
    for (;;) {
        int sym = decode(s, lit);
        if (sym < 0) return sym;
        if (sym < 256) {
            if (s->out_len == s->out_cap) {
                int err = reserve(s, 1);
                if (err) return err;
            }
            s->out[s->out_len++] = (uint8_t)sym;
        } else if (sym == 256) {
            return 0;
        } else {
            sym -= 257;
            if (sym >= 29) return LATHE_INFLATE_BAD_SYMBOL;
            uint32_t extra;
            int err = getbits(s, len_extra[sym], &extra);
            if (err) return err;
            size_t len = len_base[sym] + extra;
            int dsym = decode(s, dist);
            if (dsym < 0) return dsym;
            if (dsym >= 30) return LATHE_INFLATE_BAD_SYMBOL;
            err = getbits(s, dist_extra[dsym], &extra);
            if (err) return err;
            size_t d = dist_base[dsym] + extra;
            if (d > s->out_len) return LATHE_INFLATE_BAD_DISTANCE;
            err = reserve(s, len);
            if (err) return err;
            uint8_t *o = s->out + s->out_len;
            const uint8_t *from = o - d;
            if (d >= len) {
                memcpy(o, from, len);
            } else {
                for (size_t i = 0; i < len; i++) o[i] = from[i];  // overlapping: repeats the pattern
            }
            s->out_len += len;
        }
    }
}

static int fixed(state *s, huffman *lit, huffman *dist) {
    uint8_t lengths[MAX_LITLEN];
    unsigned i = 0;
    for (; i < 144; i++) lengths[i] = 8;
    for (; i < 256; i++) lengths[i] = 9;
    for (; i < 280; i++) lengths[i] = 7;
    for (; i < MAX_LITLEN; i++) lengths[i] = 8;
    build(lit, lengths, MAX_LITLEN);
    for (i = 0; i < MAX_DIST; i++) lengths[i] = 5;
    build(dist, lengths, MAX_DIST);
    return codes(s, lit, dist);
}

static int dynamic(state *s, huffman *lit, huffman *dist) {
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    uint8_t lengths[MAX_LITLEN + MAX_DIST];
    uint32_t hlit, hdist, hclen, v;
    int err;
    if ((err = getbits(s, 5, &hlit)) || (err = getbits(s, 5, &hdist)) || (err = getbits(s, 4, &hclen))) return err;
    unsigned nlen = hlit + 257, ndist = hdist + 1, ncode = hclen + 4;
    if (nlen > 286 || ndist > 30) return LATHE_INFLATE_BAD_CODE_LENGTHS;

    unsigned i;
    for (i = 0; i < ncode; i++) {
        if ((err = getbits(s, 3, &v))) return err;
        lengths[order[i]] = (uint8_t)v;
    }
    for (; i < 19; i++) lengths[order[i]] = 0;
    huffman *lencode = lit;  // reuse lit's storage for the code-length code
    if ((err = build(lencode, lengths, 19))) return err;

    for (i = 0; i < nlen + ndist;) {
        int sym = decode(s, lencode);
        if (sym < 0) return sym;
        if (sym < 16) {
            lengths[i++] = (uint8_t)sym;
            continue;
        }
        uint8_t value = 0;
        unsigned repeat;
        if (sym == 16) {
            if (i == 0) return LATHE_INFLATE_BAD_CODE_LENGTHS;
            value = lengths[i - 1];
            if ((err = getbits(s, 2, &v))) return err;
            repeat = 3 + v;
        } else if (sym == 17) {
            if ((err = getbits(s, 3, &v))) return err;
            repeat = 3 + v;
        } else if (sym == 18) {
            if ((err = getbits(s, 7, &v))) return err;
            repeat = 11 + v;
        } else {
            return LATHE_INFLATE_BAD_CODE_LENGTHS;
        }
        if (i + repeat > nlen + ndist) return LATHE_INFLATE_BAD_CODE_LENGTHS;
        while (repeat--) lengths[i++] = value;
    }
    if (lengths[256] == 0) return LATHE_INFLATE_BAD_CODE_LENGTHS;  // no end-of-block code
    if ((err = build(lit, lengths, nlen))) return err;
    if ((err = build(dist, lengths + nlen, ndist))) return err;
    return codes(s, lit, dist);
}

// Decodes one DEFLATE stream at s->in_pos. On return in_pos is just after the stream.
static int inflate_stream(state *s) {
    huffman *tables = (huffman *)malloc(2 * sizeof(huffman));
    if (!tables) return LATHE_INFLATE_NO_MEMORY;
    int err = 0;
    uint32_t last = 0, type;
    while (!last) {
        if ((err = getbits(s, 1, &last)) || (err = getbits(s, 2, &type))) break;
        if (type == 0) err = stored(s);
        else if (type == 1) err = fixed(s, &tables[0], &tables[1]);
        else if (type == 2) err = dynamic(s, &tables[0], &tables[1]);
        else err = LATHE_INFLATE_BAD_BLOCK_TYPE;
        if (err) break;
    }
    free(tables);
    if (!err) align_to_byte(s);
    return err;
}

int lathe_inflate_raw(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                      size_t *in_used, size_t *out_len) {
    state s;
    memset(&s, 0, sizeof s);
    s.in = in;
    s.in_len = in ? in_len : 0;
    s.out = out;
    s.out_cap = out ? out_cap : 0;
    int err = inflate_stream(&s);
    if (err) s.in_pos -= s.bitcnt / 8;  // report the offset of the byte being decoded
    if (in_used) *in_used = s.in_pos;
    if (out_len) *out_len = s.out_len;
    return err;
}

// ---- CRC-32 ---------------------------------------------------------------------------------

static void crc_tables(uint32_t t[8][256]) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++) t[k][n] = t[0][t[k - 1][n] & 0xff] ^ (t[k - 1][n] >> 8);
}

static uint32_t crc32_with(const uint32_t t[8][256], uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n >= 8) {  // slicing by 8
        uint32_t a = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t b = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = t[7][a & 0xff] ^ t[6][(a >> 8) & 0xff] ^ t[5][(a >> 16) & 0xff] ^ t[4][a >> 24] ^
              t[3][b & 0xff] ^ t[2][(b >> 8) & 0xff] ^ t[1][(b >> 16) & 0xff] ^ t[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t lathe_crc32(uint32_t crc, const uint8_t *data, size_t len) {
    uint32_t t[8][256];
    crc_tables(t);
    return crc32_with((const uint32_t(*)[256])t, crc, data, len);
}

// ---- gzip -----------------------------------------------------------------------------------

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Parses a member header at s->in_pos; leaves in_pos at the DEFLATE data.
static int gzip_header(state *s, const uint32_t t[8][256]) {
    const uint8_t *in = s->in;
    size_t start = s->in_pos, pos = start, n = s->in_len;
    if (n - pos < 10) return n - pos >= 2 && (in[pos] != 0x1f || in[pos + 1] != 0x8b) ? LATHE_INFLATE_BAD_HEADER
                                                                                     : LATHE_INFLATE_TRUNCATED;
    if (in[pos] != 0x1f || in[pos + 1] != 0x8b || in[pos + 2] != 8) return LATHE_INFLATE_BAD_HEADER;
    unsigned flags = in[pos + 3];
    if (flags & 0xe0) return LATHE_INFLATE_BAD_HEADER;
    pos += 10;
    if (flags & 4) {  // FEXTRA
        if (n - pos < 2) return LATHE_INFLATE_TRUNCATED;
        size_t xlen = in[pos] | (size_t)in[pos + 1] << 8;
        pos += 2;
        if (n - pos < xlen) return LATHE_INFLATE_TRUNCATED;
        pos += xlen;
    }
    for (unsigned f = 8; f <= 16; f <<= 1) {  // FNAME, FCOMMENT: zero-terminated
        if (!(flags & f)) continue;
        while (pos < n && in[pos]) pos++;
        if (pos == n) return LATHE_INFLATE_TRUNCATED;
        pos++;
    }
    if (flags & 2) {  // FHCRC: low 16 bits of the CRC-32 of the header so far
        if (n - pos < 2) return LATHE_INFLATE_TRUNCATED;
        uint32_t want = in[pos] | (uint32_t)in[pos + 1] << 8;
        if ((crc32_with(t, 0, in + start, pos - start) & 0xffff) != want) return LATHE_INFLATE_BAD_CRC;
        pos += 2;
    }
    s->in_pos = pos;
    return 0;
}

int lathe_gunzip(const uint8_t *in, size_t in_len, size_t max_out,
                 uint8_t **out, size_t *out_len, size_t *err_offset) {
    state s;
    memset(&s, 0, sizeof s);
    s.in = in;
    s.in_len = in ? in_len : 0;
    s.can_grow = 1;
    s.out_limit = max_out;
    // Guess the size from the last member's ISIZE (exact for one member under 4 GiB).
    if (s.in_len >= 18) {
        // DEFLATE expands at most ~1032:1, so a larger ISIZE is corrupt: do not trust it.
        size_t guess = le32(s.in + s.in_len - 4);
        if (guess > 0 && guess / 1032 <= s.in_len && (!max_out || guess <= max_out)) {
            s.out = (uint8_t *)malloc(guess);
            if (s.out) s.out_cap = guess;
        }
    }
    uint32_t(*t)[256] = (uint32_t(*)[256])malloc(8 * 256 * sizeof(uint32_t));
    int err = t ? 0 : LATHE_INFLATE_NO_MEMORY;
    if (t) crc_tables(t);
    int members = 0;
    while (!err) {
        if (members > 0) {
            size_t p = s.in_pos;
            while (p < s.in_len && s.in[p] == 0) p++;
            if (p == s.in_len) { s.in_pos = p; break; }      // end, or zero padding
            if (p != s.in_pos) { err = LATHE_INFLATE_TRAILING_DATA; s.in_pos = p; break; }
            if (s.in_len - p < 2 || s.in[p] != 0x1f || s.in[p + 1] != 0x8b) { err = LATHE_INFLATE_TRAILING_DATA; break; }
        }
        if ((err = gzip_header(&s, (const uint32_t(*)[256])t))) break;
        size_t member_start = s.out_len;
        if ((err = inflate_stream(&s))) { s.in_pos -= s.bitcnt / 8; break; }
        if (s.in_len - s.in_pos < 8) { err = LATHE_INFLATE_TRUNCATED; s.in_pos = s.in_len; break; }
        uint32_t crc = crc32_with((const uint32_t(*)[256])t, 0, s.out + member_start, s.out_len - member_start);
        if (crc != le32(s.in + s.in_pos)) { err = LATHE_INFLATE_BAD_CRC; break; }
        if ((uint32_t)(s.out_len - member_start) != le32(s.in + s.in_pos + 4)) { err = LATHE_INFLATE_BAD_SIZE; break; }
        s.in_pos += 8;
        members++;
    }
    free(t);
    *out = s.out;
    *out_len = s.out_len;
    if (err_offset) *err_offset = s.in_pos;
    return err;
}

void lathe_inflate_free(void *p) { free(p); }
