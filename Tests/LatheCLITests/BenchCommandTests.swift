import Foundation
import XCTest
import _LatheTestSupport

/// `lathe bench ...` output structure (JSON lines, rows, keys, errors). Timings are never asserted;
/// the workloads themselves are tested in LatheBenchTests.
final class BenchCommandTests: XCTestCase {
    /// Runs `lathe bench <arguments> --json`, checks it succeeded and parses every line.
    func benchRows(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        let run = try runLathe(["bench"] + arguments + ["--json"])
        XCTAssertEqual(run.status, 0, "stderr: \(run.err)", file: file, line: line)
        return try run.out.split(separator: "\n").map { text in
            let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
            return try XCTUnwrap(object as? [String: Any], "not a JSON object: \(text)", file: file, line: line)
        }
    }

    func testMachineJSON() throws {
        let rows = try benchRows(["machine", "--seconds", "0.01", "--array-mb", "1", "--threads", "2"])
        let metrics = rows.map { "\($0["metric"] as? String ?? "?")/\($0["threads"] as? Int ?? 0)" }
        XCTAssertEqual(metrics, ["cpu/2", "fma_peak/1", "fma_peak/2", "bandwidth_copy/1", "bandwidth_copy/2",
                                 "bandwidth_triad/1", "bandwidth_triad/2"])
        XCTAssertNotNil(rows[0]["isa"] as? String)
        XCTAssertNotNil(rows[0]["cores"] as? Int)
        for row in rows.dropFirst() {
            XCTAssertEqual(row["bench"] as? String, "machine")
            XCTAssertGreaterThan((row["value"] as? NSNumber)?.doubleValue ?? 0, 0, "\(row)")
            XCTAssertNotNil(row["unit"] as? String)
        }
    }

    func testTrainJSON() throws {
        let rows = try benchRows(["train", "--steps", "2", "--warmup", "1", "--repeat", "1", "--models", "mlp", "--threads", "1"])
        XCTAssertEqual(rows.count, 1)
        let row = try XCTUnwrap(rows.first)
        XCTAssertEqual(row["bench"] as? String, "train")
        XCTAssertEqual(row["model"] as? String, "mlp")
        XCTAssertEqual(row["batch"] as? Int, 64)
        XCTAssertEqual(row["threads"] as? Int, 1)
        for key in ["steps_per_second", "best_steps_per_second", "ms_per_step", "loss"] {
            XCTAssertNotNil(row[key] as? NSNumber, "missing \(key) in \(row)")
        }
        // A cross-entropy of 10 classes near initialisation.
        XCTAssertEqual((row["loss"] as? NSNumber)?.doubleValue ?? 0, log(10.0), accuracy: 1)
    }

    func testInferJSONRowsPerModelBatchAndVariant() throws {
        let rows = try benchRows(["infer", "--models", "mlp", "--batches", "1,4", "--repeat", "1", "--min-time", "0.001"])
        let variants = ["fp32", "fp32-folded", "int8", "int8-dynamic", "int4-weight"]
        XCTAssertEqual(rows.map { $0["batch"] as? Int }, [1, 1, 1, 1, 1, 4, 4, 4, 4, 4])
        XCTAssertEqual(rows.compactMap { $0["variant"] as? String }, variants + variants)
        for row in rows { XCTAssertNotNil(row["ms"] as? NSNumber); XCTAssertNotNil(row["best_ms"] as? NSNumber) }
    }

    func testMemoryRunsChildrenAndReportsBoth() throws {
        let rows = try benchRows(["memory", "--batch", "1", "--context", "8", "--d-model", "16", "--layers", "1",
                                  "--heads", "2", "--repeat", "1", "--threads", "1"])
        XCTAssertEqual(rows.map { $0["checkpointing"] as? Bool }, [false, true])
        for row in rows {
            XCTAssertGreaterThan((row["peak_rss_mb"] as? NSNumber)?.doubleValue ?? 0, 0)
            XCTAssertGreaterThanOrEqual((row["peak_rss_mb"] as? NSNumber)?.doubleValue ?? 0,
                                        (row["baseline_rss_mb"] as? NSNumber)?.doubleValue ?? .infinity)
            XCTAssertNotNil(row["ms_per_step"] as? NSNumber)
        }
    }

    func testBadArgumentsFail() throws {
        for args in [["train", "--models", "nope"], ["gemm", "--repeat", "0"], ["gemm", "--shapes", "3x3"]] {
            let run = try runLathe(["bench"] + args)
            XCTAssertNotEqual(run.status, 0, "\(args) should fail")
        }
    }
}
