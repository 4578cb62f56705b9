// Robustness check for Sources/CLatheKernels/inflate.c under AddressSanitizer/UBSan: truncations,
// random bit and byte flips, and garbage DEFLATE bodies of the given gzip files; exact-size input
// buffers so any over-read is caught. Not part of the build. Run from the repository root:
//   clang -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
//     -I Sources/CLatheKernels/include Tools/fuzz/inflate_fuzz.c Sources/CLatheKernels/inflate.c -o /tmp/inflate_fuzz
//   /tmp/inflate_fuzz Tests/Fixtures/data/*.gz Sources/LatheData/Resources/digits.csv.gz
#include "lathe_inflate.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static uint64_t st = 88172645463325252ull;
static uint64_t rnd(void){ st ^= st << 13; st ^= st >> 7; st ^= st << 17; return st; }
static void run(const uint8_t *src, size_t n, long *ok, long *bad) {
    uint8_t *in = malloc(n ? n : 1); memcpy(in, src, n);      // exact-size copy: ASan sees over-reads
    uint8_t *out; size_t ol, eo;
    int s = lathe_gunzip(in, n, 1 << 24, &out, &ol, &eo);
    if (s) (*bad)++; else (*ok)++;
    if (eo > n) { printf("err offset %zu > n %zu\n", eo, n); abort(); }
    lathe_inflate_free(out);
    size_t cap = rnd() % 5000; uint8_t *o2 = malloc(cap ? cap : 1); size_t used, olen;
    if (n > 10) { s = lathe_inflate_raw(in + 10, n - 10, o2, cap, &used, &olen); if (used > n - 10 || olen > cap) abort(); }
    free(o2); free(in);
}
int main(int argc, char **argv) {
    long ok = 0, bad = 0;
    for (int a = 1; a < argc; a++) {
        FILE *f = fopen(argv[a], "rb"); fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
        uint8_t *b = malloc(n); if (fread(b, 1, n, f) != (size_t)n) return 1; fclose(f);
        for (long k = 0; k <= n; k += (n > 2000 ? 37 : 1)) run(b, k, &ok, &bad);           // truncations
        for (int t = 0; t < 3000; t++) {                                                    // bit/byte flips
            uint8_t *c = malloc(n); memcpy(c, b, n);
            int flips = 1 + rnd() % 4;
            for (int j = 0; j < flips; j++) { size_t p = rnd() % n; if (rnd() & 1) c[p] ^= 1 << (rnd() % 8); else c[p] = rnd(); }
            run(c, n, &ok, &bad); free(c);
        }
        for (int t = 0; t < 3000; t++) {                                                    // garbage bodies
            size_t m = 10 + rnd() % 600; uint8_t *c = malloc(m); memcpy(c, b, 10);
            for (size_t j = 10; j < m; j++) c[j] = rnd();
            run(c, m, &ok, &bad); free(c);
        }
        free(b);
    }
    printf("ok %ld errors %ld\n", ok, bad);
}
