import Foundation
import LatheTensor
import XCTest

/// Asserts `actual` matches `expected` in shape and, elementwise,
/// `|a - e| <= atol + rtol * |e|` (NaN matches NaN, infinities must be equal).
public func assertClose(_ actual: Tensor, _ expected: Tensor, rtol: Float = 1e-5, atol: Float = 1e-6,
                        _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) {
    guard actual.shape == expected.shape else {
        XCTFail("shape \(actual.shape) != expected \(expected.shape) \(message())", file: file, line: line)
        return
    }
    let a = actual.scalars, e = expected.scalars
    var worst = 0, worstExcess: Float = 0
    for i in a.indices {
        let x = a[i], y = e[i]
        if x.isNaN && y.isNaN { continue }
        if x.isInfinite || y.isInfinite {
            if x != y { worst = i; worstExcess = .infinity; break }
            continue
        }
        let excess = Swift.abs(x - y) - (atol + rtol * Swift.abs(y))
        if !(excess <= 0) && (excess > worstExcess || excess.isNaN) { worst = i; worstExcess = excess.isNaN ? .infinity : excess }
    }
    if worstExcess > 0 {
        XCTFail("not close at flat index \(worst): \(a[worst]) vs expected \(e[worst]) (rtol \(rtol), atol \(atol)) \(message())",
                file: file, line: line)
    }
}

/// Asserts the gradient of `f` (summed against a fixed random seed) at each input matches
/// central finite differences in Float64 arithmetic on the Float32 function.
///
/// - Parameters:
///   - eps: step; the check is `|analytic - numeric| <= atol + rtol * |numeric|`.
public func assertGradientsMatchFiniteDifferences(
    _ inputs: [Tensor], eps: Float = 1e-2, rtol: Float = 2e-2, atol: Float = 2e-3, seed: UInt64 = 7,
    _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line,
    _ f: ([Tensor]) -> Tensor
) {
    let leaves = inputs.map { $0.requiringGrad() }
    let out = f(leaves)
    var rng = RandomGenerator(seed: seed)
    let weights = Tensor.normal(out.shape, generator: &rng)
    (out * weights).sum().backward()
    let w = weights.scalars
    func objective(_ xs: [Tensor]) -> Double {
        let y = noGrad { f(xs) }.scalars
        return zip(y, w).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }
    for (k, x) in inputs.enumerated() {
        guard let grad = leaves[k].grad?.scalars else {
            XCTFail("input \(k) got no gradient \(message())", file: file, line: line)
            continue
        }
        var values = x.scalars
        for i in values.indices {
            let old = values[i]
            values[i] = old + eps
            var plus = inputs; plus[k] = Tensor(values, shape: x.shape)
            values[i] = old - eps
            var minus = inputs; minus[k] = Tensor(values, shape: x.shape)
            values[i] = old
            let numeric = Float((objective(plus) - objective(minus)) / (2 * Double(eps)))
            if Swift.abs(grad[i] - numeric) > atol + rtol * Swift.abs(numeric) {
                XCTFail("input \(k) element \(i): analytic \(grad[i]) vs numeric \(numeric) \(message())", file: file, line: line)
                return
            }
        }
    }
}

/// Asserts two state dicts have the same keys and bit-identical values (float or integer).
public func assertIdentical(_ a: [String: Tensor], _ b: [String: Tensor], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(Set(a.keys), Set(b.keys), file: file, line: line)
    for (k, v) in a {
        XCTAssertEqual(v.dtype == .float32 ? v.scalars : v.intScalars.map(Float.init),
                       b[k].map { $0.dtype == .float32 ? $0.scalars : $0.intScalars.map(Float.init) }, "\(k) differs", file: file, line: line)
    }
}
