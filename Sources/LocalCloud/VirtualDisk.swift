import Crypto
import FactoryModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Fixed-format VHD files as Azure stores OS disks: the disk's bytes followed by the 512-byte
/// footer of the VHD specification (checksum included), so `qemu-img info` reads them. Files are
/// sparse: only the blocks the emulated OS and artifacts wrote take space.
public enum VirtualDisk {
    public static let footerSize = 512
    static let blockSize = 64 * 1024

    /// What a VM's disk holds: the base image plus every artifact applied, in order.
    public struct Content: Codable, Sendable, Equatable {
        public var osType: OSType
        public var baseImage: String
        public var artifacts: [String]
        public var generalized: Bool
        public var virtualSize: Int64

        public init(osType: OSType, baseImage: String, artifacts: [String], generalized: Bool, virtualSize: Int64) {
            self.osType = osType
            self.baseImage = baseImage
            self.artifacts = artifacts
            self.generalized = generalized
            self.virtualSize = virtualSize
        }
    }

    /// Writes a sparse fixed VHD for `content` at `url`: a manifest in the first block, one
    /// deterministic 64 KiB block per layer (base image, each artifact) at offsets derived from
    /// its name, and the footer. The same content always gives the same bytes.
    public static func write(_ content: Content, to url: URL) throws {
        let size = content.virtualSize
        precondition(size % (1 << 20) == 0 && size >= 1 << 20, "virtual size must be whole MiB")
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        try handle.truncate(atOffset: UInt64(size) + UInt64(footerSize))
        let manifest = try JSONEncoder.sorted.encode(content)
        var first = Data("IMAGEFACTORY-LOCAL-DISK\n".utf8) + manifest + Data("\n".utf8)
        if first.count < blockSize { first.append(Data(count: blockSize - first.count)) }
        try handle.seek(toOffset: 0)
        try handle.write(contentsOf: first.prefix(blockSize))
        let layers = ["base:" + content.baseImage] + content.artifacts.map { "artifact:" + $0 } + (content.generalized ? ["generalized"] : [])
        let slots = UInt64(size) / UInt64(blockSize)
        for (i, layer) in layers.enumerated() {
            let seed = StableHash.fnv1a("\(i):\(layer)")
            let slot = 1 + seed % max(1, slots - 1)
            try handle.seek(toOffset: slot * UInt64(blockSize))
            try handle.write(contentsOf: pattern(seed: seed, count: blockSize))
        }
        try handle.seek(toOffset: UInt64(size))
        try handle.write(contentsOf: footer(virtualSize: size, uniqueID: Data(SHA256.hash(data: manifest).prefix(16))))
    }

    /// Deterministic bytes (xorshift) standing for what an installer wrote.
    static func pattern(seed: UInt64, count: Int) -> Data {
        var state = seed | 1
        var data = Data(capacity: count)
        for _ in 0..<(count / 8) {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            withUnsafeBytes(of: state.littleEndian) { data.append(contentsOf: $0) }
        }
        return data
    }

    /// The 512-byte VHD footer for a fixed disk (all fields big-endian).
    public static func footer(virtualSize: Int64, uniqueID: Data) -> Data {
        var f = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { f.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { f.append(contentsOf: $0) } }
        f.append(contentsOf: Array("conectix".utf8))
        u32(0x0000_0002)  // features: reserved bit always set
        u32(0x0001_0000)  // file format version 1.0
        u64(UInt64.max)  // data offset: none for fixed disks
        u32(0x30D3_9800)  // timestamp: fixed, seconds since 2000-01-01 (2026-01-01), so bytes are reproducible
        // Creator application "win " (Hyper-V): readers such as qemu then take the size from the
        // footer, as Azure does, instead of the CHS geometry, which rounds most sizes down.
        f.append(contentsOf: Array("win ".utf8))
        u32(0x0001_0000)  // creator version
        f.append(contentsOf: Array("Wi2k".utf8))  // creator host OS, as Azure's tools write
        u64(UInt64(virtualSize))  // original size
        u64(UInt64(virtualSize))  // current size
        let (c, h, s) = geometry(virtualSize)
        withUnsafeBytes(of: c.bigEndian) { f.append(contentsOf: $0) }
        f.append(h)
        f.append(s)
        u32(2)  // disk type: fixed
        let checksumOffset = f.count
        u32(0)
        f.append(uniqueID.prefix(16))
        if uniqueID.count < 16 { f.append(Data(count: 16 - uniqueID.count)) }
        f.append(0)  // saved state
        f.append(Data(count: footerSize - f.count))
        var sum: UInt32 = 0
        for byte in f { sum = sum &+ UInt32(byte) }
        let checksum = ~sum
        withUnsafeBytes(of: checksum.bigEndian) { f.replaceSubrange(checksumOffset..<checksumOffset + 4, with: $0) }
        return f
    }

    /// CHS geometry per the VHD specification's algorithm.
    static func geometry(_ size: Int64) -> (UInt16, UInt8, UInt8) {
        var totalSectors = size / 512
        if totalSectors > 65535 * 16 * 255 { totalSectors = 65535 * 16 * 255 }
        var sectorsPerTrack: Int64, heads: Int64, cylinderTimesHeads: Int64
        if totalSectors >= 65535 * 16 * 63 {
            sectorsPerTrack = 255
            heads = 16
            cylinderTimesHeads = totalSectors / sectorsPerTrack
        } else {
            sectorsPerTrack = 17
            cylinderTimesHeads = totalSectors / sectorsPerTrack
            heads = (cylinderTimesHeads + 1023) / 1024
            if heads < 4 { heads = 4 }
            if cylinderTimesHeads >= heads * 1024 || heads > 16 {
                sectorsPerTrack = 31
                heads = 16
                cylinderTimesHeads = totalSectors / sectorsPerTrack
            }
            if cylinderTimesHeads >= heads * 1024 {
                sectorsPerTrack = 63
                heads = 16
                cylinderTimesHeads = totalSectors / sectorsPerTrack
            }
        }
        return (UInt16(cylinderTimesHeads / heads), UInt8(heads), UInt8(sectorsPerTrack))
    }

    /// Whether the last 512 bytes of a file are a valid VHD footer (cookie and checksum).
    public static func hasValidFooter(_ url: URL) -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
        defer { try? handle.close() }
        guard let end = try? handle.seekToEnd(), end >= UInt64(footerSize) else { return false }
        try? handle.seek(toOffset: end - UInt64(footerSize))
        guard let f = try? handle.read(upToCount: footerSize), f.count == footerSize,
              f.prefix(8) == Data("conectix".utf8) else { return false }
        var sum: UInt32 = 0
        for (i, byte) in f.enumerated() where !(64..<68).contains(i) { sum = sum &+ UInt32(byte) }
        let stored = f[64..<68].reduce(UInt32(0)) { ($0 << 8) | UInt32($1) }
        return ~sum == stored
    }
}

/// File operations that keep sparse files sparse.
public enum SparseFile {
    /// The data extents of a file (offset, length), found with SEEK_DATA / SEEK_HOLE.
    public static func dataExtents(_ fd: Int32, size: Int64) -> [(Int64, Int64)] {
        var extents: [(Int64, Int64)] = []
        var offset: Int64 = 0
        while offset < size {
            let start = lseek(fd, off_t(offset), 3 /* SEEK_DATA */)
            if start < 0 { break }
            var end = lseek(fd, off_t(start), 4 /* SEEK_HOLE */)
            if end < 0 { end = off_t(size) }
            extents.append((Int64(start), Int64(end) - Int64(start)))
            offset = Int64(end)
        }
        return extents
    }

    /// Copies `source` to `destination` writing only the data extents; returns the bytes of data copied.
    /// `limit` stops the copy after that many data bytes (a copy failing part-way).
    @discardableResult
    public static func copy(_ source: URL, to destination: URL, limit: Int64? = nil) throws -> Int64 {
        let (input, size) = try openForReading(source)
        defer { close(input) }
        let output = open(destination.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard output >= 0 else { throw CloudError(status: 500, code: "InternalError", message: "Cannot create \(destination.lastPathComponent)") }
        defer { close(output) }
        guard ftruncate(output, off_t(size)) == 0 else { throw CloudError(status: 500, code: "InternalError", message: "Disk full") }
        var copied: Int64 = 0
        let bufferSize = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        outer: for (start, length) in dataExtents(input, size: size) {
            var done: Int64 = 0
            while done < length {
                var chunk = min(Int64(bufferSize), length - done)
                if let limit { chunk = min(chunk, limit - copied) }
                if chunk <= 0 { break outer }
                let n = pread(input, buffer, Int(chunk), off_t(start + done))
                if n <= 0 { break }
                var written = 0
                while written < n {
                    let w = pwrite(output, buffer + written, n - written, off_t(start + done) + off_t(written))
                    if w <= 0 { throw CloudError(status: 500, code: "InternalError", message: "Write failed") }
                    written += w
                }
                done += Int64(n)
                copied += Int64(n)
            }
        }
        return copied
    }

    /// Writes `data` as a sparse file of its full size holding only its written pages.
    public static func writePages(_ data: Data, to url: URL) throws {
        let output = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard output >= 0 else { throw CloudError(status: 500, code: "InternalError", message: "Cannot create \(url.lastPathComponent)") }
        defer { close(output) }
        guard ftruncate(output, off_t(data.count)) == 0 else { throw CloudError(status: 500, code: "InternalError", message: "Disk full") }
        try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
            for run in PageBlobLayout.writtenRuns(data, maxRun: Int.max) {
                let (start, length) = (run.lowerBound, run.count)
                var written = 0
                while written < length {
                    let w = pwrite(output, bytes.baseAddress! + start + written, length - written, off_t(start + written))
                    if w <= 0 { throw CloudError(status: 500, code: "InternalError", message: "Write failed") }
                    written += w
                }
            }
        }
    }

    /// Opens a file for reading and tells its size; the caller closes the descriptor.
    static func openForReading(_ url: URL) throws -> (Int32, Int64) {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw CloudError(status: 500, code: "InternalError", message: "Cannot open \(url.lastPathComponent)") }
        var info = stat()
        fstat(fd, &info)
        return (fd, Int64(info.st_size))
    }

    /// Bytes the file really occupies on disk.
    public static func allocatedBytes(_ url: URL) -> Int64 {
        var info = stat()
        guard stat(url.path, &info) == 0 else { return 0 }
        return Int64(info.st_blocks) * 512
    }

    /// Base64 MD5 of the whole file, like Content-MD5. Holes are hashed as zeros without reading them.
    public static func md5(_ url: URL) throws -> String {
        let (fd, size) = try openForReading(url)
        defer { close(fd) }
        var hasher = Insecure.MD5()
        let bufferSize = 1 << 20
        let zeros = Data(count: bufferSize)
        var buffer = Data(count: bufferSize)
        var position: Int64 = 0
        func feedZeros(_ count: Int64) {
            var left = count
            while left > 0 {
                let n = Int(min(left, Int64(bufferSize)))
                zeros.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                left -= Int64(n)
            }
        }
        for (start, length) in dataExtents(fd, size: size) {
            feedZeros(start - position)
            var done: Int64 = 0
            while done < length {
                let want = Int(min(Int64(bufferSize), length - done))
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(start + done)) }
                if n <= 0 { break }
                buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                done += Int64(n)
            }
            position = start + length
        }
        feedZeros(size - position)
        return Data(hasher.finalize()).base64EncodedString()
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }
}
