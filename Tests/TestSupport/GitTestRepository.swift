import Foundation

/// A real git repository in a fresh temporary folder, driven with the `git` command: the one git
/// fixture every test target uses (libgit2 is checked against what git itself writes, and the
/// end-to-end tests run the binary on such repositories).
public struct GitTestRepository: Sendable {
    public let root: URL

    /// A git command that failed, with what it printed.
    public struct CommandError: Error, CustomStringConvertible {
        public var command: String
        public var status: Int32
        public var output: String
        public var description: String { "`\(command)` exited with \(status): \(output)" }

        public init(command: String, status: Int32, output: String) {
            self.command = command
            self.status = status
            self.output = output
        }
    }

    /// Creates an empty repository on branch `main` with a local identity, under `folder` in the temporary directory.
    public init(folder: String = "imagefactory-git-tests") throws {
        let base = FileManager.default.temporaryDirectory
            .appendingPathComponent(folder, isDirectory: true)
            .appendingPathComponent(UUID().uuidString, isDirectory: true)
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        root = base.resolvingSymlinksInPath()
        try git("init", "--quiet", "--initial-branch=main")
        try git("config", "user.name", "Image Factory Tests")
        try git("config", "user.email", "tests@imagefactory.invalid")
        try git("config", "commit.gpgsign", "false")
        try git("config", "tag.gpgsign", "false")
        try git("config", "core.autocrlf", "false")
    }

    /// Runs `body` with a new repository and deletes it afterwards.
    public static func with<T>(folder: String = "imagefactory-git-tests", _ body: (GitTestRepository) throws -> T) throws -> T {
        let repository = try GitTestRepository(folder: folder)
        defer { repository.delete() }
        return try body(repository)
    }

    public func delete() {
        try? FileManager.default.removeItem(at: root)
    }

    public var path: String { root.path }

    public func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    public func write(_ relative: String, _ text: String) throws {
        try write(relative, data: Data(text.utf8))
    }

    public func write(_ relative: String, data: Data) throws {
        let file = url(relative)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: file)
    }

    public func remove(_ relative: String) throws {
        try FileManager.default.removeItem(at: url(relative))
    }

    /// Writes every file (paths relative to the repository) and commits them all; returns the new commit SHA.
    @discardableResult
    public func commit(_ files: [String: String] = [:], message: String = "Update configuration") throws -> String {
        for (relative, text) in files { try write(relative, text) }
        try git("add", "--all")
        try git("commit", "--quiet", "--allow-empty", "-m", message)
        return try git("rev-parse", "HEAD")
    }

    /// Runs git in the repository and returns its standard output without the trailing newline.
    @discardableResult
    public func git(_ arguments: String...) throws -> String {
        try Self.run(arguments, in: root)
    }

    /// Runs git with only this repository's settings: no user or system configuration, no GIT_DIR from a hook.
    public static func run(_ arguments: [String], in directory: URL) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git"] + arguments
        process.currentDirectoryURL = directory
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("GIT_") }
        environment["GIT_CONFIG_NOSYSTEM"] = "1"
        environment["GIT_CONFIG_GLOBAL"] = "/dev/null"
        environment["GIT_TERMINAL_PROMPT"] = "0"
        environment["LC_ALL"] = "C"
        process.environment = environment
        let output = Pipe()
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("git-stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errors) }
        let errorHandle = try FileHandle(forWritingTo: errors)
        defer { try? errorHandle.close() }
        process.standardOutput = output
        process.standardError = errorHandle
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        var text = String(decoding: data, as: UTF8.self)
        while text.hasSuffix("\n") { text.removeLast() }
        guard process.terminationStatus == 0 else {
            let stderr = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            throw CommandError(command: "git " + arguments.joined(separator: " "), status: process.terminationStatus, output: text + stderr)
        }
        return text
    }
}
