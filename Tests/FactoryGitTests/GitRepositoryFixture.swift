import Foundation

/// A real git repository in a fresh temporary folder, driven with the `git` command, so the
/// libgit2 reader is checked against what git itself writes.
struct GitRepositoryFixture {
    let root: URL

    struct CommandError: Error, CustomStringConvertible {
        var command: String
        var status: Int32
        var output: String
        var description: String { "`\(command)` exited with \(status): \(output)" }
    }

    /// Creates an empty repository on branch `main` with a local identity.
    init() throws {
        let base = FileManager.default.temporaryDirectory
            .appendingPathComponent("imagefactory-git-tests", isDirectory: true)
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
    static func with<T>(_ body: (GitRepositoryFixture) throws -> T) throws -> T {
        let repository = try GitRepositoryFixture()
        defer { repository.delete() }
        return try body(repository)
    }

    func delete() {
        try? FileManager.default.removeItem(at: root)
    }

    var path: String { root.path }

    func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    func write(_ relative: String, _ text: String) throws {
        try write(relative, data: Data(text.utf8))
    }

    func write(_ relative: String, data: Data) throws {
        let file = url(relative)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: file)
    }

    func remove(_ relative: String) throws {
        try FileManager.default.removeItem(at: url(relative))
    }

    /// Writes every file (paths relative to the repository) and commits them all; returns the new commit SHA.
    @discardableResult
    func commit(_ files: [String: String] = [:], message: String = "Update configuration") throws -> String {
        for (relative, text) in files { try write(relative, text) }
        try git("add", "--all")
        try git("commit", "--quiet", "--allow-empty", "-m", message)
        return try git("rev-parse", "HEAD")
    }

    /// Runs git in the repository and returns its standard output without the trailing newline.
    @discardableResult
    func git(_ arguments: String...) throws -> String {
        try Self.run(arguments, in: root)
    }

    static func run(_ arguments: [String], in directory: URL) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git"] + arguments
        process.currentDirectoryURL = directory
        // Only this repository's settings count: no user or system configuration, no GIT_DIR from a hook.
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
            throw CommandError(command: "git " + arguments.joined(separator: " "), status: process.terminationStatus,
                               output: text + stderr)
        }
        return text
    }
}

/// Small valid configuration files, enough for the loader to accept them.
enum SampleFiles {
    static func labs(_ imagePaths: [String], labName: String = "DevLab") -> String {
        let paths = imagePaths.map { "\"\($0.replacingOccurrences(of: "\\", with: "\\\\"))\"" }.joined(separator: ", ")
        return """
            {
              "Labs": [
                {
                  "SubscriptionId": "11111111-1111-4111-8111-111111111111",
                  "ResourceGroup": "rg-labs",
                  "LabName": "\(labName)",
                  "ImagePaths": [\(paths)]
                }
              ]
            }

            """
    }

    static func template(notes: String = "A golden image", osType: String = "Windows") -> String {
        """
        {
          "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
          "contentVersion": "1.0.0.0",
          "parameters": {
            "newVMName": { "type": "string" },
            "labName": { "type": "string" },
            "size": { "type": "string" },
            "userName": { "type": "string" },
            "password": { "type": "securestring" }
          },
          "resources": [
            {
              "apiVersion": "2018-10-15-preview",
              "type": "Microsoft.DevTestLab/labs/virtualmachines",
              "name": "[concat(parameters('labName'), '/', parameters('newVMName'))]",
              "location": "[resourceGroup().location]",
              "properties": {
                "notes": "\(notes)",
                "galleryImageReference": {
                  "offer": "WindowsServer",
                  "publisher": "MicrosoftWindowsServer",
                  "sku": "2016-Datacenter",
                  "osType": "\(osType)",
                  "version": "latest"
                },
                "size": "[parameters('size')]",
                "userName": "[parameters('userName')]",
                "password": "[parameters('password')]"
              }
            }
          ]
        }

        """
    }
}

extension String {
    var utf16LEWithBOM: Data {
        var data = Data([0xFF, 0xFE])
        for unit in utf16 { data.append(contentsOf: [UInt8(unit & 0xFF), UInt8(unit >> 8)]) }
        return data
    }

    var utf8WithBOM: Data { Data([0xEF, 0xBB, 0xBF]) + Data(utf8) }
}
