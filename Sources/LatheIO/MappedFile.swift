import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A file's bytes: a read-only private mapping of a regular file (an empty file gives an empty
/// buffer, no mapping), or an owned copy. GGUF files and memory-mapped safetensors read through it.
final class MappedFile: @unchecked Sendable {
    /// Why a file could not be mapped (each reader turns it into its own error).
    enum Failure: Error {
        case notFound
        case unreadable(String)
    }

    let bytes: UnsafeRawBufferPointer
    /// What to release: the mapping, or the allocation (`nil` for an empty file).
    private let base: UnsafeMutableRawPointer?
    private let isMapped: Bool

    /// Maps the file at `path`.
    init(mapping path: String) throws(Failure) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw .notFound }
            throw .unreadable(String(cString: strerror(code)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .unreadable(String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw .unreadable((st.st_mode & S_IFMT) == S_IFDIR ? "it is a directory" : "it is not a regular file")
        }
        let size = Int(st.st_size)
        guard size > 0 else {
            (bytes, base, isMapped) = (UnsafeRawBufferPointer(start: nil, count: 0), nil, false)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw .unreadable("mmap failed: " + String(cString: strerror(errno)))
        }
        (bytes, base, isMapped) = (UnsafeRawBufferPointer(start: p, count: size), p, true)
    }

    /// An owned copy of `source`.
    init(copying source: some Collection<UInt8>) {
        let count = source.count
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
        _ = p.initializeMemory(as: UInt8.self, from: source)
        (bytes, base, isMapped) = (UnsafeRawBufferPointer(start: p.baseAddress, count: count), p.baseAddress, false)
    }

    deinit {
        guard let base else { return }
        if isMapped {
            munmap(base, bytes.count)
        } else {
            base.deallocate()
        }
    }
}
