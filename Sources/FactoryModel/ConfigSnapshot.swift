import Foundation

/// One file of a factory configuration as read from git (or the working tree).
public struct ConfigFile: Sendable, Equatable {
    /// Path relative to the configuration folder, always with `/` (e.g. `GoldenImages/Win2016/Datacenter.json`).
    public var path: String
    /// The git blob SHA-1 of the content: the template's identity for provenance and change detection.
    public var blobSha: String
    public var data: Data

    public init(path: String, blobSha: String, data: Data) {
        self.path = path
        self.blobSha = blobSha
        self.data = data
    }

    /// Builds a file whose blob SHA is computed the way git does (`blob <size>\0<content>`).
    public init(path: String, data: Data) {
        self.init(path: path, blobSha: GitBlobHash.sha(of: data), data: data)
    }
}

/// Everything the factory reads from the configuration folder at one revision.
public struct ConfigSnapshot: Sendable {
    /// The resolved commit SHA, or nil when read from the working tree.
    public var commit: String?
    /// The configuration folder inside the repository (e.g. `Configuration`), for messages.
    public var configDirectory: String
    public var files: [ConfigFile]
    /// Notes from the source itself (e.g. uncommitted changes in the working tree).
    public var notes: [Diagnostic]

    public init(commit: String?, configDirectory: String = "Configuration", files: [ConfigFile], notes: [Diagnostic] = []) {
        self.commit = commit
        self.configDirectory = configDirectory
        self.files = files
        self.notes = notes
    }

    /// The repository-relative path of a file in the configuration folder, as shown to users.
    public func displayPath(_ path: String) -> String {
        configDirectory.isEmpty ? path : "\(configDirectory)/\(path)"
    }
}

/// Where configuration comes from: libgit2 at a commit in production, an in-memory tree in tests.
public protocol ConfigSource: Sendable {
    func load() throws -> ConfigSnapshot
}

/// An in-memory configuration, for tests and generated benchmarks.
public struct InMemoryConfigSource: ConfigSource {
    public var snapshot: ConfigSnapshot

    public init(commit: String? = "0000000000000000000000000000000000000000", files: [String: String]) {
        self.snapshot = ConfigSnapshot(
            commit: commit,
            files: files.keys.sorted().map { ConfigFile(path: $0, data: Data(files[$0]!.utf8)) })
    }

    public init(snapshot: ConfigSnapshot) { self.snapshot = snapshot }

    public func load() throws -> ConfigSnapshot { snapshot }
}

/// Git's object hash for blobs, so an in-memory or working-tree file has the same identity as in a commit.
public enum GitBlobHash {
    public static func sha(of data: Data) -> String {
        var sha = SHA1Digest()
        sha.update(Data("blob \(data.count)\u{0}".utf8))
        sha.update(data)
        return sha.hexDigest()
    }
}
