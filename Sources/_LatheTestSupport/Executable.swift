import Foundation
import XCTest

/// The built `lathe` executable: next to the test bundle (SwiftPM builds every product
/// before testing).
public func latheExecutable(file: StaticString = #filePath, line: UInt = #line) throws -> URL {
    let candidates = [
        Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
    ].map { $0.appendingPathComponent("lathe") }
    guard let url = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        XCTFail("lathe executable not found next to the tests (looked in \(candidates.map(\.path))); build with `swift build`",
                file: file, line: line)
        throw CocoaError(.fileNoSuchFile)
    }
    return url
}

/// A finished `lathe` run.
public struct LatheRun {
    public var status: Int32
    public var out: String
    public var err: String
}

/// Runs `lathe` with `arguments` in `directory` (with `input` on its standard input, if given) and waits for it.
public func runLathe(_ arguments: [String], in directory: URL? = nil, environment: [String: String]? = nil,
                     input: String? = nil) throws -> LatheRun {
    let process = try startLathe(arguments, in: directory, environment: environment, withInput: input != nil)
    if let input {
        let handle = (process.standardInput as! Pipe).fileHandleForWriting
        handle.write(Data(input.utf8))
        try handle.close()
    }
    let o = (process.standardOutput as! Pipe).fileHandleForReading.readDataToEndOfFile()
    let e = (process.standardError as! Pipe).fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return LatheRun(status: process.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
}

/// Starts `lathe` with pipes for stdout and stderr (and stdin with `withInput`: write to
/// `(process.standardInput as! Pipe).fileHandleForWriting`, then close it), without waiting.
public func startLathe(_ arguments: [String], in directory: URL? = nil, environment: [String: String]? = nil,
                       withInput: Bool = false) throws -> Process {
    let process = Process()
    process.executableURL = try latheExecutable()
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    process.standardOutput = Pipe()
    process.standardError = Pipe()
    if withInput { process.standardInput = Pipe() }
    try process.run()
    return process
}
