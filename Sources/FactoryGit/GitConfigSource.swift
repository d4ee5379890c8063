import CGit2
import FactoryModel
import Foundation

/// Reads the factory configuration straight from git objects through libgit2: no checkout,
/// no `git` subprocess, so what is built is exactly what a commit holds.
public struct GitConfigSource: ConfigSource {
    /// Where to read from.
    public enum Mode: Sendable, Equatable {
        /// A revision git understands: branch, tag, SHA, `HEAD~2`.
        case revision(String)
        /// The files on disk, for editing locally before committing.
        case workingTree
    }

    public var repositoryPath: String
    public var mode: Mode
    /// The configuration folder inside the repository (default `Configuration`).
    public var configDirectory: String

    public init(repositoryPath: String, mode: Mode = .revision("HEAD"), configDirectory: String = "Configuration") {
        self.repositoryPath = repositoryPath
        self.mode = mode
        self.configDirectory = ImagePath.normalize(configDirectory)
    }

    /// Finds the repository containing `path` (like git does when run in a sub-folder).
    public static func discoverRepository(from path: String) throws -> String {
        LibGit2.initialize()
        var buffer = git_buf()
        defer { git_buf_dispose(&buffer) }
        guard git_repository_discover(&buffer, path, 0, nil) == 0, let ptr = buffer.ptr else {
            throw FactoryError.invalidInput("No git repository was found at or above \(path).",
                                            hint: "Run inside the repository that holds Configuration/, or pass --repo PATH.")
        }
        let gitDir = String(cString: ptr)
        // Open it to report the working directory rather than the .git folder.
        var repo: OpaquePointer?
        guard git_repository_open(&repo, gitDir) == 0, let repo else { return gitDir }
        defer { git_repository_free(repo) }
        if let workdir = git_repository_workdir(repo) { return String(cString: workdir) }
        return gitDir
    }

    /// The commit HEAD points at, or nil (unborn branch, not a repository).
    public static func headCommit(repositoryPath: String) throws -> String? {
        LibGit2.initialize()
        var repo: OpaquePointer?
        guard git_repository_open_ext(&repo, repositoryPath, 0, nil) == 0, let repo else { return nil }
        defer { git_repository_free(repo) }
        var oid = git_oid()
        guard git_reference_name_to_id(&oid, repo, "HEAD") == 0 else { return nil }
        return withUnsafePointer(to: &oid) { LibGit2.hex($0) }
    }

    public func load() throws -> ConfigSnapshot {
        LibGit2.initialize()
        var repoPointer: OpaquePointer?
        guard git_repository_open_ext(&repoPointer, repositoryPath, 0, nil) == 0, let repo = repoPointer else {
            throw FactoryError.invalidInput("\(repositoryPath) is not a git repository (\(LibGit2.lastError())).",
                                            hint: "Pass --repo with the path of the repository that holds \(configDirectory)/.")
        }
        defer { git_repository_free(repo) }
        switch mode {
        case .workingTree:
            return try loadWorkingTree(repo)
        case .revision(let revision):
            return try loadRevision(revision, repo: repo)
        }
    }

    private func loadRevision(_ revision: String, repo: OpaquePointer) throws -> ConfigSnapshot {
        var object: OpaquePointer?
        guard git_revparse_single(&object, repo, revision) == 0, let object else {
            throw FactoryError.invalidInput("The revision \"\(revision)\" was not found in \(repositoryPath) (\(LibGit2.lastError())).",
                                            hint: "Use a branch, tag, commit SHA or an expression such as HEAD~1.")
        }
        defer { git_object_free(object) }
        var commitObject: OpaquePointer?
        guard git_object_peel(&commitObject, object, GIT_OBJECT_COMMIT) == 0, let commitObject else {
            throw FactoryError.invalidInput("The revision \"\(revision)\" does not name a commit.")
        }
        defer { git_object_free(commitObject) }
        let commitSha = LibGit2.hex(git_object_id(commitObject))
        var tree: OpaquePointer?
        guard git_commit_tree(&tree, commitObject) == 0, let tree else {
            throw FactoryError(.workFailed, "Cannot read the tree of commit \(commitSha): \(LibGit2.lastError())")
        }
        defer { git_tree_free(tree) }

        var configTree: OpaquePointer? = tree
        var ownedConfigTree: OpaquePointer?
        if !configDirectory.isEmpty {
            var entry: OpaquePointer?
            guard git_tree_entry_bypath(&entry, tree, configDirectory) == 0, let entry else {
                throw FactoryError.invalidInput(
                    "The folder \(configDirectory)/ does not exist at commit \(commitSha.prefix(12)) (\(revision)).",
                    file: configDirectory, hint: "Check --config-dir, or that the configuration was committed.")
            }
            defer { git_tree_entry_free(entry) }
            guard git_tree_entry_type(entry) == GIT_OBJECT_TREE,
                  git_tree_lookup(&ownedConfigTree, repo, git_tree_entry_id(entry)) == 0 else {
                throw FactoryError.invalidInput("\(configDirectory) is not a folder at commit \(commitSha.prefix(12)).", file: configDirectory)
            }
            configTree = ownedConfigTree
        }
        defer { if let ownedConfigTree { git_tree_free(ownedConfigTree) } }

        var files: [ConfigFile] = []
        try collect(tree: configTree!, prefix: "", repo: repo, into: &files)
        var notes: [Diagnostic] = []
        if let dirty = uncommittedChanges(repo), dirty > 0 {
            notes.append(.note(
                "The working tree has \(dirty) uncommitted change\(dirty == 1 ? "" : "s") under \(configDirectory.isEmpty ? "the repository" : configDirectory + "/"); they are not part of commit \(commitSha.prefix(12)) being read.",
                hint: "Commit them, or pass --worktree to read the files on disk."))
        }
        return ConfigSnapshot(commit: commitSha, configDirectory: configDirectory, files: files, notes: notes)
    }

    private func collect(tree: OpaquePointer, prefix: String, repo: OpaquePointer, into files: inout [ConfigFile]) throws {
        let count = git_tree_entrycount(tree)
        for i in 0..<count {
            guard let entry = git_tree_entry_byindex(tree, i) else { continue }
            let name = String(cString: git_tree_entry_name(entry))
            let path = prefix.isEmpty ? name : "\(prefix)/\(name)"
            let oid = git_tree_entry_id(entry)
            switch git_tree_entry_type(entry) {
            case GIT_OBJECT_TREE:
                var subtree: OpaquePointer?
                guard git_tree_lookup(&subtree, repo, oid) == 0, let subtree else { continue }
                defer { git_tree_free(subtree) }
                try collect(tree: subtree, prefix: path, repo: repo, into: &files)
            case GIT_OBJECT_BLOB:
                var blob: OpaquePointer?
                guard git_blob_lookup(&blob, repo, oid) == 0, let blob else {
                    throw FactoryError(.workFailed, "Cannot read \(path) from git: \(LibGit2.lastError())")
                }
                defer { git_blob_free(blob) }
                let size = Int(git_blob_rawsize(blob))
                let data = size == 0 ? Data() : Data(bytes: git_blob_rawcontent(blob), count: size)
                files.append(ConfigFile(path: path, blobSha: LibGit2.hex(oid), data: data))
            default:
                continue  // submodules are not configuration
            }
        }
    }

    /// Number of changed, added or deleted files under the configuration folder in the working tree, or nil for a bare repository.
    private func uncommittedChanges(_ repo: OpaquePointer) -> Int? {
        guard git_repository_is_bare(repo) == 0 else { return nil }
        var options = git_status_options()
        git_status_options_init(&options, UInt32(GIT_STATUS_OPTIONS_VERSION))
        options.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR
        options.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED.rawValue | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS.rawValue
        let spec = configDirectory.isEmpty ? "*" : configDirectory + "/"
        return spec.withCString { cSpec -> Int? in
            var strings: [UnsafeMutablePointer<CChar>?] = [strdup(cSpec)]
            defer { strings.forEach { free($0) } }
            return strings.withUnsafeMutableBufferPointer { buffer -> Int? in
                options.pathspec = git_strarray(strings: buffer.baseAddress, count: 1)
                var list: OpaquePointer?
                guard git_status_list_new(&list, repo, &options) == 0, let list else { return nil }
                defer { git_status_list_free(list) }
                return Int(git_status_list_entrycount(list))
            }
        }
    }

    private func loadWorkingTree(_ repo: OpaquePointer) throws -> ConfigSnapshot {
        guard let workdirPointer = git_repository_workdir(repo) else {
            throw FactoryError.invalidInput("\(repositoryPath) is a bare repository: it has no working tree to read.",
                                            hint: "Drop --worktree to read a commit.")
        }
        let root = URL(fileURLWithPath: String(cString: workdirPointer)).appendingPathComponent(configDirectory)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FactoryError.invalidInput("The folder \(configDirectory)/ does not exist in the working tree.", file: configDirectory)
        }
        var files: [ConfigFile] = []
        let rootPath = root.standardizedFileURL.path
        if let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) {
            for case let url as URL in enumerator {
                // Git's own folder (or a nested repository's) is never configuration: with --config-dir . it is inside root.
                if url.lastPathComponent == ".git" {
                    enumerator.skipDescendants()
                    continue
                }
                guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
                let full = url.standardizedFileURL.path
                guard full.hasPrefix(rootPath + "/") else { continue }
                let relative = String(full.dropFirst(rootPath.count + 1))
                // What git ignores is not configuration, in the working tree as in a commit.
                let repositoryRelative = configDirectory.isEmpty ? relative : configDirectory + "/" + relative
                var ignored: Int32 = 0
                if git_ignore_path_is_ignored(&ignored, repo, repositoryRelative) == 0, ignored == 1 { continue }
                let data = try Data(contentsOf: url)
                files.append(ConfigFile(path: relative, blobSha: LibGit2.blobHash(data), data: data))
            }
        }
        files.sort { $0.path < $1.path }
        return ConfigSnapshot(commit: nil, configDirectory: configDirectory, files: files,
                              notes: [.note("Read from the working tree, not from a commit: images built from it carry no commit.")])
    }
}

/// Small helpers over the libgit2 C API.
enum LibGit2 {
    private static let once: Void = { git_libgit2_init(); return () }()

    static func initialize() { _ = once }

    static func lastError() -> String {
        guard let error = git_error_last(), let message = error.pointee.message else { return "unknown libgit2 error" }
        return String(cString: message)
    }

    static func hex(_ oid: UnsafePointer<git_oid>?) -> String {
        guard let oid else { return "" }
        var buffer = [CChar](repeating: 0, count: 41)
        git_oid_tostr(&buffer, 41, oid)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Git's blob id for content on disk.
    static func blobHash(_ data: Data) -> String {
        var oid = git_oid()
        let ok = data.withUnsafeBytes { raw in git_odb_hash(&oid, raw.baseAddress, raw.count, GIT_OBJECT_BLOB) }
        guard ok == 0 else { return GitBlobHash.sha(of: data) }
        return withUnsafePointer(to: &oid) { hex($0) }
    }
}
