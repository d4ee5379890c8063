import Foundation
import Testing
import TestSupport

/// End-to-end: the built `imagefactory` binary, run as a subprocess on repositories made with real `git`.
@Suite("imagefactory validate (the built binary)")
struct ValidateCommandTests {
    @Test("exit 0 on the repository's sample configuration, with a summary naming the commit")
    func sampleIsValid() throws {
        try FixtureRepository.with { repo in
            let sha = try repo.commitSampleConfiguration()
            let result = try ImageFactory.run(["validate", "--repo", repo.path, "--ci", "none"])
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("Configuration Configuration/ at commit \(sha)"))
            #expect(result.stdout.contains("Valid: 0 errors, 0 warnings."), "\(result)")
            #expect(result.stdout.contains("Datacenter"))
            #expect(!result.stdout.contains("error:"))
        }
    }

    @Test("exit 2 with an error naming the file, line and column on a broken Labs.json")
    func brokenLabsFile() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            try repo.commit(["Configuration/Labs.json": """
                {
                  "Labs": [
                    {
                      "SubscriptionId": "11111111-1111-4111-8111-111111111111"
                      "LabName": "DevLab",
                      "ImagePaths": ["Windows"]
                    }
                  ]
                }

                """])
            let result = try ImageFactory.run(["validate", "--repo", repo.path, "--ci", "none"])
            #expect(result.status == 2, "\(result)")
            #expect(result.stdout.contains("Configuration/Labs.json:5:7: error: Invalid JSON"), "\(result)")
            #expect(result.stdout.contains("Invalid: 1 error"), "\(result)")
        }
    }

    @Test("--json prints a parseable report: commit, labs[].images, templates[].blobSha, diagnostics")
    func jsonReport() throws {
        try FixtureRepository.with { repo in
            let sha = try repo.commitSampleConfiguration()
            let result = try ImageFactory.run(["validate", "--repo", repo.path, "--json", "--ci", "none"])
            #expect(result.status == 0, "\(result)")
            let root = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            #expect(root["commit"] as? String == sha)
            let diagnostics = try #require(root["diagnostics"] as? [Any])
            #expect(diagnostics.isEmpty)

            let labs = try #require(root["labs"] as? [[String: Any]])
            #expect(labs.count == repo.sampleLabCount)
            for lab in labs {
                let images = try #require(lab["images"] as? [String])
                #expect(!images.isEmpty)
                #expect(lab["labName"] is String)
            }

            let templates = try #require(root["templates"] as? [[String: Any]])
            #expect(templates.count == repo.sampleTemplatePaths.count)
            for template in templates {
                let path = try #require(template["path"] as? String)
                let blobSha = try #require(template["blobSha"] as? String)
                #expect(blobSha == (try repo.git("rev-parse", "HEAD:Configuration/GoldenImages/\(path)")), "\(path)")
                #expect(template["vmName"] is String)
                #expect(template["imageName"] is String)
            }
            // Every image a lab receives is one of the templates.
            let templatePaths = Set(templates.compactMap { $0["path"] as? String })
            #expect(Set(labs.flatMap { ($0["images"] as? [String]) ?? [] }).isSubset(of: templatePaths))
        }
    }

    @Test("--json on an invalid configuration exits 2 and lists the diagnostics with their location")
    func jsonReportWithErrors() throws {
        try FixtureRepository.with { repo in
            try repo.commitBrokenImagePath()
            let result = try ImageFactory.run(["validate", "--repo", repo.path, "--json", "--ci", "none"])
            #expect(result.status == 2, "\(result)")
            let root = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            let diagnostics = try #require(root["diagnostics"] as? [[String: Any]])
            let error = try #require(diagnostics.first { $0["severity"] as? String == "error" })
            #expect(error["file"] as? String == "Configuration/Labs.json")
            #expect(error["line"] as? Int == FixtureRepository.brokenImagePathLine)
            #expect((error["message"] as? String)?.contains("\"Windows/Server 2016\" matches no template") == true)
            #expect(error["hint"] as? String == "Did you mean \"Windows/Server 2019\"?")
        }
    }

    @Test("--ci github prints ::error and ::warning annotations with file and line")
    func githubAnnotations() throws {
        try FixtureRepository.with { repo in
            try repo.commitBrokenImagePath()
            let result = try ImageFactory.run(["validate", "--repo", repo.path, "--ci", "github"])
            #expect(result.status == 2, "\(result)")
            let lines = result.stdout.split(separator: "\n").map(String.init)
            let error = try #require(lines.first { $0.hasPrefix("::error ") }, "\(result)")
            #expect(error.hasPrefix("::error file=Configuration/Labs.json,line=\(FixtureRepository.brokenImagePathLine),title=ImageFactory::"))
            #expect(error.contains("matches no template"))
            let warning = try #require(lines.first { $0.hasPrefix("::warning ") }, "\(result)")
            #expect(warning.hasPrefix("::warning file=Configuration/GoldenImages/Windows/Server 2022/Datacenter.json,"))
            #expect(!lines.contains { $0.hasPrefix("##vso[") })
        }
    }

    @Test("--ci azure-devops prints ##vso[task.logissue] lines with sourcepath and linenumber")
    func azureDevOpsAnnotations() throws {
        try FixtureRepository.with { repo in
            try repo.commitBrokenImagePath()
            let result = try ImageFactory.run(["validate", "--repo", repo.path, "--ci", "azure-devops"])
            #expect(result.status == 2, "\(result)")
            let lines = result.stdout.split(separator: "\n").map(String.init)
            let error = try #require(lines.first { $0.hasPrefix("##vso[task.logissue type=error;") }, "\(result)")
            #expect(error.hasPrefix(
                "##vso[task.logissue type=error;sourcepath=Configuration/Labs.json;linenumber=\(FixtureRepository.brokenImagePathLine);]"))
            #expect(error.contains("matches no template"))
            #expect(lines.contains { $0.hasPrefix("##vso[task.logissue type=warning;sourcepath=Configuration/GoldenImages/") })
            #expect(!lines.contains { $0.hasPrefix("::error") })
        }
    }

    @Test("CI annotations are also printed for errors that stop the run, such as a bad --ref")
    func annotationsForBadRef() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let result = try ImageFactory.run(["validate", "--repo", repo.path, "--ref", "no-such-branch", "--ci", "github"])
            #expect(result.status == 2, "\(result)")
            #expect(result.stderr.contains("The revision \"no-such-branch\" was not found"), "\(result)")
            #expect(result.stdout.contains("::error "), "\(result)")
        }
    }

    @Test("a usage error exits 64", arguments: [
        ["validate", "--no-such-flag"],
        ["validate", "--ci", "jenkins"],
        ["validate", "--max-concurrent-jobs", "many"],
        ["no-such-command"],
    ])
    func usageError(arguments: [String]) throws {
        let result = try ImageFactory.run(arguments)
        #expect(result.status == 64, "\(result)")
        #expect(!result.stderr.isEmpty)
    }

    @Test("--ref reads an older commit, and --worktree reads uncommitted edits")
    func refAndWorktree() throws {
        try FixtureRepository.with { repo in
            let good = try repo.commitSampleConfiguration()
            try repo.commit(["Configuration/Labs.json": "{ \"Labs\": [ }\n"])
            let old = try ImageFactory.run(["validate", "--repo", repo.path, "--ref", good, "--ci", "none"])
            #expect(old.status == 0, "\(old)")
            let head = try ImageFactory.run(["validate", "--repo", repo.path, "--ci", "none"])
            #expect(head.status == 2, "\(head)")

            // Fix the file on disk without committing: only --worktree sees the fix.
            try repo.write("Configuration/Labs.json", try repo.sampleFile("Labs.json"))
            let committed = try ImageFactory.run(["validate", "--repo", repo.path, "--ci", "none"])
            #expect(committed.status == 2, "\(committed)")
            #expect(committed.stdout.contains("uncommitted change"), "\(committed)")
            let worktree = try ImageFactory.run(["validate", "--repo", repo.path, "--worktree", "--ci", "none"])
            #expect(worktree.status == 0, "\(worktree)")
            #expect(worktree.stdout.contains("at the working tree"), "\(worktree)")
        }
    }

    @Test("without --repo the repository is found from the current folder, even a sub-folder")
    func discoversRepository() throws {
        try FixtureRepository.with { repo in
            let sha = try repo.commitSampleConfiguration()
            let result = try ImageFactory.run(["validate", "--ci", "none"], in: repo.url("Configuration/GoldenImages"))
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("at commit \(sha)"))
        }
    }

    @Test("bad settings from flags and from the environment exit 2 and name the setting")
    func badSettings() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let flag = try ImageFactory.run(["validate", "--repo", repo.path, "--max-concurrent-jobs", "0", "--ci", "none"])
            #expect(flag.status == 2, "\(flag)")
            #expect(flag.stdout.contains("maxConcurrentJobs = \"0\" (from command line)"), "\(flag)")
            let environment = try ImageFactory.run(["validate", "--repo", repo.path, "--ci", "none"],
                                                   environment: ["IMAGEFACTORY_DEFAULT_OS_STATE": "frozen"])
            #expect(environment.status == 2, "\(environment)")
            #expect(environment.stdout.contains("IMAGEFACTORY_DEFAULT_OS_STATE = \"frozen\" (from environment)"), "\(environment)")
            // A good environment value reaches every template that does not choose for itself.
            let specialized = try ImageFactory.run(["validate", "--repo", repo.path, "--json", "--ci", "none"],
                                                   environment: ["IMAGEFACTORY_DEFAULT_OS_STATE": "specialized"])
            #expect(specialized.status == 0, "\(specialized)")
            let root = try #require(try JSONSerialization.jsonObject(with: Data(specialized.stdout.utf8)) as? [String: Any])
            let templates = try #require(root["templates"] as? [[String: Any]])
            #expect(!templates.isEmpty)
            #expect(templates.allSatisfy { $0["osState"] as? String == "specialized" })
        }
    }
}

// MARK: - Running the binary

/// The result of one run of the binary.
struct CommandResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var description: String { "exit \(status)\n--- stdout ---\n\(stdout)\n--- stderr ---\n\(stderr)" }
}

/// Finds and runs the `imagefactory` executable built with the tests.
enum ImageFactory {
    /// The binary built alongside this test bundle: first next to the running test executable (the
    /// products folder of whatever scratch path was used), then in the package's usual build folders.
    static func binary() throws -> URL {
        let fileManager = FileManager.default
        var folders: [URL] = []
        let cwd = URL(fileURLWithPath: fileManager.currentDirectoryPath, isDirectory: true)
        for executable in [CommandLine.arguments.first, Bundle.main.executablePath].compactMap({ $0 }) {
            var folder = URL(fileURLWithPath: executable, relativeTo: cwd).standardizedFileURL.resolvingSymlinksInPath()
                .deletingLastPathComponent()
            // On macOS the test runner sits inside `X.xctest/Contents/MacOS/`: walk up to the products folder.
            for _ in 0..<4 {
                folders.append(folder)
                folder.deleteLastPathComponent()
            }
        }
        let root = packageRoot()
        for scratch in [".build", ".build-tests"] {
            folders.append(root.appendingPathComponent(scratch).appendingPathComponent("debug"))
        }
        if let entries = try? fileManager.contentsOfDirectory(atPath: root.path) {
            for entry in entries.sorted() where entry.hasPrefix(".build") {
                folders.append(root.appendingPathComponent(entry).appendingPathComponent("debug"))
            }
        }
        for folder in folders {
            let candidate = folder.appendingPathComponent("imagefactory")
            var isDirectory: ObjCBool = false
            if fileManager.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
               fileManager.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        throw BinaryNotFound(searched: folders.map(\.path))
    }

    struct BinaryNotFound: Error, CustomStringConvertible {
        var searched: [String]
        var description: String {
            "The imagefactory binary was not found (build it with `swift build`); searched:\n" + searched.joined(separator: "\n")
        }
    }

    /// Runs the binary with a clean environment: no CI detection, no IMAGEFACTORY_* settings, no GIT_* leaking in.
    static func run(_ arguments: [String], in directory: URL? = nil, environment extra: [String: String] = [:]) throws -> CommandResult {
        try Subprocess.run(try binary(), arguments, in: directory ?? FileManager.default.temporaryDirectory, environment: extra)
    }

    static func packageRoot(file: String = #filePath) -> URL {
        var url = URL(fileURLWithPath: file).deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
            url.deleteLastPathComponent()
        }
        return URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}

enum Subprocess {
    static func run(_ executable: URL, _ arguments: [String], in directory: URL, environment extra: [String: String] = [:]) throws -> CommandResult {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = directory
        var environment = ProcessInfo.processInfo.environment.filter { key, _ in
            !key.hasPrefix("IMAGEFACTORY_") && !key.hasPrefix("GIT_") && key != "TF_BUILD" && key != "GITHUB_ACTIONS"
        }
        environment["GIT_CONFIG_NOSYSTEM"] = "1"
        environment["GIT_CONFIG_GLOBAL"] = "/dev/null"
        environment["GIT_TERMINAL_PROMPT"] = "0"
        environment["LC_ALL"] = "C"
        for (key, value) in extra { environment[key] = value }
        process.environment = environment
        // Files rather than pipes: a chatty child can never block on a full pipe.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("imagefactory-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outURL = scratch.appendingPathComponent("stdout"), errURL = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return CommandResult(status: process.terminationStatus,
                             stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
                             stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
    }
}

// MARK: - Fixture repositories

/// The shared git fixture (TestSupport), in the end-to-end tests' own folder.
typealias FixtureRepository = GitTestRepository

extension GitTestRepository {
    /// Runs `body` with a new repository in the end-to-end tests' folder and deletes it afterwards.
    static func with(_ body: (GitTestRepository) throws -> Void) throws {
        try GitTestRepository.with(folder: "imagefactory-e2e-tests", body)
    }

    struct GitFailed: Error, CustomStringConvertible {
        var command: String
        var result: CommandResult
        var description: String { "git \(command) failed: \(result)" }
    }

    // MARK: The repository's own sample configuration

    /// The package's `Configuration/` folder: the sample users start from.
    static var sampleFolder: URL { ImageFactory.packageRoot().appendingPathComponent("Configuration") }

    /// Paths of the sample's files relative to its folder.
    var sampleFiles: [String] {
        let folder = Self.sampleFolder.standardizedFileURL.path
        let enumerator = FileManager.default.enumerator(at: Self.sampleFolder, includingPropertiesForKeys: [.isRegularFileKey])
        var files: [String] = []
        while let url = enumerator?.nextObject() as? URL {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            files.append(String(url.standardizedFileURL.path.dropFirst(folder.count + 1)))
        }
        return files.sorted()
    }

    var sampleTemplatePaths: [String] {
        sampleFiles.filter { $0.hasPrefix("GoldenImages/") && $0.lowercased().hasSuffix(".json") }
            .map { String($0.dropFirst("GoldenImages/".count)) }
    }

    var sampleLabCount: Int {
        let data = (try? Data(contentsOf: Self.sampleFolder.appendingPathComponent("Labs.json"))) ?? Data()
        let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        return (root?["Labs"] as? [Any])?.count ?? -1
    }

    func sampleFile(_ relative: String) throws -> String {
        try String(contentsOf: Self.sampleFolder.appendingPathComponent(relative), encoding: .utf8)
    }

    /// Copies the sample configuration into `Configuration/` and commits it; returns the commit SHA.
    @discardableResult
    func commitSampleConfiguration() throws -> String {
        let files = sampleFiles
        guard files.contains("Labs.json"), !sampleTemplatePaths.isEmpty else {
            throw GitFailed(command: "(copy sample)", result: CommandResult(status: -1, stdout: "", stderr: "No sample at \(Self.sampleFolder.path)"))
        }
        for relative in files {
            try write("Configuration/" + relative, data: try Data(contentsOf: Self.sampleFolder.appendingPathComponent(relative)))
        }
        return try commit(message: "Sample configuration")
    }

    // MARK: A configuration with one bad ImagePath and one unused template

    /// Line of the ImagePath that matches nothing in `commitBrokenImagePath`'s Labs.json.
    static let brokenImagePathLine = 10

    @discardableResult
    func commitBrokenImagePath() throws -> String {
        try commit([
            "Configuration/Labs.json": """
                {
                  "Labs": [
                    {
                      "SubscriptionId": "11111111-1111-4111-8111-111111111111",
                      "ResourceGroup": "rg-dev-labs-weu",
                      "LabName": "DeveloperLab",
                      "ImagePaths": [
                        "Windows/Server 2019",
                        "Linux",
                        "Windows/Server 2016"
                      ]
                    }
                  ]
                }

                """,
            "Configuration/GoldenImages/Windows/Server 2019/Datacenter.json": Self.template(osType: "Windows"),
            "Configuration/GoldenImages/Windows/Server 2022/Datacenter.json": Self.template(osType: "Windows"),
            "Configuration/GoldenImages/Linux/Ubuntu 22.04 LTS.json": Self.template(osType: "Linux"),
        ], message: "Broken ImagePath")
    }

    static func template(osType: String) -> String {
        """
        {
          "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
          "contentVersion": "1.0.0.0",
          "parameters": {
            "newVMName": { "type": "string" }, "labName": { "type": "string" }, "size": { "type": "string" },
            "userName": { "type": "string" }, "password": { "type": "securestring" }
          },
          "resources": [
            {
              "apiVersion": "2018-10-15-preview",
              "type": "Microsoft.DevTestLab/labs/virtualmachines",
              "name": "[concat(parameters('labName'), '/', parameters('newVMName'))]",
              "location": "[resourceGroup().location]",
              "properties": {
                "notes": "A \(osType) golden image",
                "galleryImageReference": {
                  "publisher": "Publisher", "offer": "Offer", "sku": "Sku", "osType": "\(osType)", "version": "latest"
                },
                "size": "[parameters('size')]"
              }
            }
          ]
        }

        """
    }
}
