// Compiles the kernel bodies of the file named by LM_SELF three times: portable (_gen), and on
// x86 for AVX2 (_avx2) and AVX-512 (_avx512), each with its per-function target attribute.
// During a pass, LM_SFX is the name suffix, LM_ATTR the attribute, and one of LM_PASS_GEN,
// LM_PASS_AVX2, LM_PASS_AVX512 is defined. The including file guards its bodies with LM_BODY.
#define LM_BODY 1
#define LM_SFX _gen
#define LM_ATTR
#define LM_PASS_GEN 1
#include LM_SELF
#undef LM_PASS_GEN
#undef LM_SFX
#undef LM_ATTR
#if LM_X86
#define LM_SFX _avx2
#define LM_ATTR LM_TARGET_AVX2
#define LM_PASS_AVX2 1
#include LM_SELF
#undef LM_PASS_AVX2
#undef LM_SFX
#undef LM_ATTR
#define LM_SFX _avx512
#define LM_ATTR LM_TARGET_AVX512
#define LM_PASS_AVX512 1
#include LM_SELF
#undef LM_PASS_AVX512
#undef LM_SFX
#undef LM_ATTR
#endif
#undef LM_BODY
