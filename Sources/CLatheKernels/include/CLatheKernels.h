// The umbrella header of the CLatheKernels module: every public header, listed so that
// adding one changes this file (and so invalidates cached module builds).
#include "lathe_attention.h"
#include "lathe_conv.h"
#include "lathe_elementwise.h"
#include "lathe_ggml.h"
#include "lathe_inflate.h"
#include "lathe_kernels.h"
#include "lathe_norm.h"
#include "lathe_optim.h"
#include "lathe_pool.h"
#include "lathe_quant.h"
