import Crypto
import Foundation

/// Incremental SHA-1, used only to compute git blob identities (not for security).
struct SHA1Digest {
    private var hasher = Insecure.SHA1()
    mutating func update(_ data: Data) { hasher.update(data: data) }
    func hexDigest() -> String { hasher.finalize().map { String(format: "%02x", $0) }.joined() }
}

/// Stable hashes used for fingerprints and deterministic names.
public enum StableHash {
    /// Hex SHA-256 of a string: fingerprints of inventories and plans.
    public static func sha256(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Hex SHA-256 of bytes.
    public static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// A 64-bit FNV-1a hash: cheap, stable across runs and platforms (unlike `Hasher`).
    public static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
