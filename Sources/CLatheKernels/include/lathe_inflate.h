// DEFLATE (RFC 1951) and gzip (RFC 1952) decoding for LatheData.
//
// Portable C, no system zlib. Every function checks its input: corrupt or truncated data gives a
// negative error code, never a read or write outside the buffers it was given.
#ifndef LATHE_INFLATE_H
#define LATHE_INFLATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Results of the functions below (0 = success, negative = error).
typedef enum {
    LATHE_INFLATE_OK = 0,
    LATHE_INFLATE_TRUNCATED = -1,       // the input ends inside a block, header or trailer
    LATHE_INFLATE_BAD_BLOCK_TYPE = -2,  // block type 3 (reserved)
    LATHE_INFLATE_BAD_STORED_LEN = -3,  // stored block LEN != ~NLEN
    LATHE_INFLATE_BAD_CODE_LENGTHS = -4,// dynamic block: over-subscribed or invalid code lengths
    LATHE_INFLATE_BAD_SYMBOL = -5,      // a bit pattern that is no code, or a reserved symbol
    LATHE_INFLATE_BAD_DISTANCE = -6,    // a match reaching back before the start of the output
    LATHE_INFLATE_OUTPUT_FULL = -7,     // the output would exceed the given capacity / limit
    LATHE_INFLATE_NO_MEMORY = -8,
    LATHE_INFLATE_BAD_HEADER = -9,      // not a gzip member (magic, method or reserved flags)
    LATHE_INFLATE_BAD_CRC = -10,        // gzip CRC-32 (or header CRC-16) mismatch
    LATHE_INFLATE_BAD_SIZE = -11,       // gzip ISIZE differs from the decoded length mod 2^32
    LATHE_INFLATE_TRAILING_DATA = -12,  // bytes after the last gzip member that are neither a member nor zero padding
} lathe_inflate_status;

/// A short English description of a status code.
const char *lathe_inflate_strerror(int status);

/// Decodes one raw DEFLATE stream (up to and including its final block) from `in[0, in_len)`
/// into `out[0, out_cap)`. On success sets `*in_used` (bytes consumed, rounded up to whole bytes)
/// and `*out_len`. On error `*in_used` holds the input offset reached and `*out_len` the bytes
/// written so far (either pointer may be NULL).
int lathe_inflate_raw(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                      size_t *in_used, size_t *out_len);

/// Decodes gzip data: one member or several concatenated (as `cat a.gz b.gz` makes), each
/// checked against its CRC-32 and ISIZE; trailing zero bytes are allowed. The output is
/// allocated here and grows as needed up to `max_out` bytes (0 = no limit); free it with
/// `lathe_inflate_free`, also after an error (`*out` may be NULL). `*err_offset` (may be NULL)
/// receives the input offset where decoding stopped.
int lathe_gunzip(const uint8_t *in, size_t in_len, size_t max_out,
                 uint8_t **out, size_t *out_len, size_t *err_offset);

/// Frees a buffer returned by `lathe_gunzip`.
void lathe_inflate_free(void *p);

/// CRC-32 (ISO-HDLC, as gzip and zlib use): pass 0 to start, the previous result to continue.
uint32_t lathe_crc32(uint32_t crc, const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif
