import LatheTensor
import XCTest
import _LatheTestSupport

/// Every op against PyTorch: forward outputs and input gradients from `Tests/Fixtures/ops.json`
/// (written by `Tools/reference/make_op_fixtures.py`).
final class GoldenOpTests: XCTestCase {
    /// Maps a fixture op name to the Lathe call; inputs arrive as leaves where they require grad.
    nonisolated(unsafe) static let table: [String: (OpCase, [Tensor]) -> [Tensor]] = {
        var t: [String: (OpCase, [Tensor]) -> [Tensor]] = [:]
        let unary: [String: (Tensor) -> Tensor] = [
            "neg": { -$0 }, "abs": { $0.abs() }, "exp": { $0.exp() }, "log": { $0.log() }, "sqrt": { $0.sqrt() },
            "rsqrt": { $0.rsqrt() }, "tanh": { $0.tanh() }, "sigmoid": { $0.sigmoid() }, "relu": { $0.relu() },
            "silu": { $0.silu() }, "softplus": { $0.softplus() }, "erf": { $0.erf() }, "sin": { $0.sin() },
            "cos": { $0.cos() }, "square": { $0.square() }, "reciprocal": { $0.reciprocal() },
        ]
        for (name, f) in unary { t[name] = { _, x in [f(x[0])] } }
        t["gelu"] = { c, x in [x[0].gelu(approximateTanh: c.string("approximate") == "tanh")] }
        t["clamp"] = { c, x in [x[0].clamped(min: c.float("min"), max: c.float("max"))] }
        t["pow_scalar"] = { c, x in [x[0].pow(c.float("exponent"))] }
        let binary: [String: (Tensor, Tensor) -> Tensor] = [
            "add": { $0 + $1 }, "sub": { $0 - $1 }, "mul": { $0 * $1 }, "div": { $0 / $1 },
            "pow": { Tensor.pow($0, $1) }, "maximum": { Tensor.maximum($0, $1) }, "minimum": { Tensor.minimum($0, $1) },
            "eq": { ($0 .== $1).to(.float32) }, "ne": { ($0 .!= $1).to(.float32) }, "lt": { ($0 < $1).to(.float32) },
            "le": { ($0 <= $1).to(.float32) }, "gt": { ($0 > $1).to(.float32) }, "ge": { ($0 >= $1).to(.float32) },
        ]
        for (name, f) in binary { t[name] = { _, x in [f(x[0], x[1])] } }
        t["mul_same"] = { _, x in [x[0] * x[0]] }
        t["add_chain"] = { _, x in [x[0] * 2 + x[0].exp()] }
        t["where"] = { _, x in [Tensor.where(x[0], x[1], x[2])] }
        t["masked_fill"] = { c, x in [x[0].maskedFill(x[1], c.float("value"))] }
        t["sum"] = { c, x in [x[0].sum(dims: c.ints("dims"), keepDims: c.bool("keepdim"))] }
        t["mean"] = { c, x in [x[0].mean(dims: c.ints("dims"), keepDims: c.bool("keepdim"))] }
        t["max_dim"] = { c, x in let r = x[0].max(dim: c.int("dim"), keepDims: c.bool("keepdim")); return [r.values, r.indices] }
        t["min_dim"] = { c, x in let r = x[0].min(dim: c.int("dim"), keepDims: c.bool("keepdim")); return [r.values, r.indices] }
        t["max_all"] = { _, x in [x[0].max()] }
        t["min_all"] = { _, x in [x[0].min()] }
        t["argmax"] = { c, x in [x[0].argmax(dim: c.int("dim"), keepDims: c.bool("keepdim"))] }
        t["argmin"] = { c, x in [x[0].argmin(dim: c.int("dim"), keepDims: c.bool("keepdim"))] }
        t["var"] = { c, x in [x[0].variance(dims: c.ints("dims"), correction: c.int("correction"), keepDims: c.bool("keepdim"))] }
        t["std"] = { c, x in [x[0].standardDeviation(dims: c.ints("dims"), correction: c.int("correction"), keepDims: c.bool("keepdim"))] }
        t["logsumexp"] = { c, x in [x[0].logSumExp(dims: c.ints("dims"), keepDims: c.bool("keepdim"))] }
        t["softmax"] = { c, x in [x[0].softmax(dim: c.int("dim"))] }
        t["log_softmax"] = { c, x in [x[0].logSoftmax(dim: c.int("dim"))] }
        t["cumsum"] = { c, x in [x[0].cumulativeSum(dim: c.int("dim"))] }
        t["topk"] = { c, x in let r = x[0].topK(c.int("k"), dim: c.int("dim"), largest: c.bool("largest")); return [r.values, r.indices] }
        t["sort"] = { c, x in let r = x[0].sorted(dim: c.int("dim"), descending: c.bool("descending")); return [r.values, r.indices] }
        t["argsort"] = { c, x in [x[0].argsort(dim: c.int("dim"), descending: c.bool("descending"))] }
        t["reshape"] = { c, x in [x[0].reshaped(c.ints("shape")!)] }
        t["permute"] = { c, x in [x[0].permuted(c.ints("dims")!)] }
        t["transpose"] = { c, x in [x[0].transposed(c.int("dim0"), c.int("dim1"))] }
        t["slice"] = { c, x in
            [x[0].sliced(dim: c.int("dim"), start: c.int("start"), end: c.int("end"), step: c.int("step"))]
        }
        t["expand"] = { c, x in [x[0].expanded(to: c.ints("shape")!)] }
        t["cat"] = { c, x in [Tensor.concatenated(x, dim: c.int("dim"))] }
        t["stack"] = { c, x in [Tensor.stacked(x, dim: c.int("dim"))] }
        t["split"] = { c, x in
            if let sizes = c.ints("split_size") { return x[0].split(sizes: sizes, dim: c.int("dim")) }
            return x[0].split(size: c.int("split_size"), dim: c.int("dim"))
        }
        t["pad"] = { c, x in [x[0].padded(torchOrder: c.ints("pad")!, value: c.float("value"))] }
        t["gather"] = { c, x in [x[0].gathering(dim: c.int("dim"), index: x[1])] }
        t["scatter_add"] = { c, x in [x[0].scatteringAdd(dim: c.int("dim"), index: x[1], source: x[2])] }
        t["index_select"] = { c, x in [x[0].indexSelect(dim: c.int("dim"), index: x[1])] }
        t["one_hot"] = { c, x in [x[0].oneHot(classes: c.int("num_classes"))] }
        t["embedding"] = { _, x in [x[0].embedding(x[1])] }
        t["matmul"] = { _, x in [x[0].matmul(x[1])] }
        t["conv2d"] = { c, x in
            [x[0].conv2d(weight: x[1], bias: x.count > 2 ? x[2] : nil, stride: c.pair("stride"), padding: c.pair("padding"),
                         dilation: c.pair("dilation"), groups: c.int("groups"))]
        }
        t["conv_transpose2d"] = { c, x in
            [x[0].convTranspose2d(weight: x[1], bias: x.count > 2 ? x[2] : nil, stride: c.pair("stride"),
                                  padding: c.pair("padding"), outputPadding: c.pair("output_padding"),
                                  dilation: c.pair("dilation"), groups: c.int("groups"))]
        }
        t["max_pool2d"] = { c, x in
            [x[0].maxPool2d(kernel: c.pair("kernel"), stride: c.pair("stride"), padding: c.pair("padding"), dilation: c.pair("dilation"))]
        }
        t["avg_pool2d"] = { c, x in
            [x[0].avgPool2d(kernel: c.pair("kernel"), stride: c.pair("stride"), padding: c.pair("padding"),
                            countIncludePad: c.bool("count_include_pad"))]
        }
        t["adaptive_avg_pool2d"] = { c, x in [x[0].adaptiveAvgPool2d(outputSize: c.pair("output_size"))] }
        t["to_float16"] = { _, x in [x[0].to(.float16).to(.float32)] }
        t["to_bfloat16"] = { _, x in [x[0].to(.bfloat16).to(.float32)] }
        return t
    }()

    /// Ops of layers and losses, checked in LatheNNTests.
    static let nnOps: Set<String> = ["cross_entropy", "nll", "mse", "l1", "huber", "bce_with_logits", "kl_div",
                                     "layer_norm", "rms_norm", "batch_norm_train"]

    func testEveryOpMatchesPyTorch() throws {
        let cases = try loadOpCases().filter { !Self.nnOps.contains($0.op) }
        XCTAssertGreaterThan(cases.count, 200)
        checkGoldenCases(cases, table: Self.table)
    }
}
