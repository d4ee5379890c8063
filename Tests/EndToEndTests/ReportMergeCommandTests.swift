import ArgumentParser
import FactoryModel
import Foundation
@testable import ImageFactoryCLI
import Testing

/// `imagefactory report merge`, in-process through the CLI library, on fabricated shard reports written
/// as the jobs of a sharded pipeline write them; and `report --html` still reaching the catalogue.
@Suite("report merge on the command line")
struct ReportMergeCommandTests {
    static let commit = "0123456789abcdef0123456789abcdef01234567"

    /// A run report as `--report-json` writes it. `shard` is (index, count), nil for the build job;
    /// `actions` are (id, stage, kind, result).
    static func report(_ runId: String, shard: (Int, Int)?, actions: [(String, String, String, String)], commit: String = commit,
                       finishedAt: String = "2026-11-22T03:10:00Z") -> [String: Any] {
        var object: [String: Any] = [
            "formatVersion": 1, "runId": runId, "commit": commit,
            "startedAt": "2026-11-22T02:00:00Z", "finishedAt": finishedAt,
            "actions": actions.map { id, stage, kind, result -> [String: Any] in
                var action: [String: Any] = ["id": id, "stage": stage, "kind": kind, "result": result, "durationSeconds": 12.5,
                                             "reason": "test", "target": id.split(separator: "/").dropFirst().first.map(String.init) ?? ""]
                if result == "failed" { action["error"] = "CopyFailed: copy of Linux_Ubuntu ended failed: 500 InternalError" }
                return action
            },
            "diagnostics": [[String: Any]](),
        ]
        let failed = actions.filter { $0.3 == "failed" }
        let buildFailed = failed.contains { $0.1 == "build" || $0.1 == "snap" }
        let anySucceeded = actions.contains { $0.3 == "succeeded" }
        object["result"] = failed.isEmpty ? "succeeded" : (!buildFailed && anySucceeded ? "partiallySucceeded" : "failed")
        if case let (index, count)? = shard {
            object["shard"] = ["index": index, "count": count, "subscriptions": ["1111111\(index)-1111-4111-8111-111111111111"], "targets": ["Lab\(index)"]]
        }
        return object
    }

    static func shard(_ index: Int, of count: Int = 4, result: String = "succeeded", commit: String = commit) -> [String: Any] {
        report("20261122-020000-shard\(index)", shard: (index, count), actions: [
            ("distribute/Lab\(index)/Linux/Ubuntu.json", "distribute", "distributeImage", result),
        ], commit: commit)
    }

    static var build: [String: Any] { report("20261122-010000-build0", shard: nil, actions: [
        ("build/Linux/Ubuntu.json", "build", "buildVM", "succeeded"), ("snap/Linux/Ubuntu.json", "snap", "captureImage", "succeeded"),
    ], finishedAt: "2026-11-22T02:00:00Z") }

    /// A scratch folder with the given reports written as `name` → JSON, deleted afterwards.
    static func withReports(_ reports: [String: [String: Any]], _ body: (URL) throws -> Void) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("imagefactory-merge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for (name, object) in reports {
            let url = folder.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: url)
        }
        try body(folder)
    }

    struct Outcome: CustomStringConvertible {
        var status: Int32
        var out: String
        var err: String
        var description: String { "exit \(status)\n--- out ---\n\(out)\n--- err ---\n\(err)" }
    }

    /// Parses `arguments` as the executable would and runs `report merge` in-process.
    static func merge(_ arguments: [String], environment: [String: String] = [:]) throws -> Outcome {
        let parsed = try ImageFactoryCommand.parseAsRoot(["report", "merge"] + arguments)
        let command = try #require(parsed as? ReportMergeCommand, "report merge parses to \(type(of: parsed))")
        var out: [String] = []
        var err: [String] = []
        let status = command.execute(runID: "20261122-040000-merged", environment: environment, out: { out.append($0) }, err: { err.append($0) })
        return Outcome(status: status, out: out.joined(separator: "\n"), err: err.joined(separator: "\n"))
    }

    @Test("every shard succeeded: exit 0, one line per job, and the merged reports written")
    func allGood() throws {
        var reports = ["build/report.json": Self.build]
        for index in 1...4 { reports["shard-\(index)/report.json"] = Self.shard(index) }
        try Self.withReports(reports) { folder in
            let files = reports.keys.sorted().map { folder.appendingPathComponent($0).path }
            let json = folder.appendingPathComponent("merged/report.json").path
            let junit = folder.appendingPathComponent("merged/junit.xml").path
            let markdown = folder.appendingPathComponent("merged/summary.md").path
            let run = try Self.merge(files + ["--shards", "4", "--report-json", json, "--junit", junit, "--summary-md", markdown, "--ci", "none"])
            #expect(run.status == 0, "\(run)")
            #expect(run.out.contains("Merged 5 reports into run 20261122-040000-merged at commit 0123456789ab"), "\(run)")
            for index in 1...4 { #expect(run.out.contains("shard \(index) of 4: succeeded, 1 action, 0 failed"), "\(run)") }
            #expect(run.out.contains("run 20261122-010000-build0: succeeded, 2 actions, 0 failed"))
            #expect(run.out.hasSuffix("Result: succeeded"), "\(run)")
            let merged = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
            #expect(merged["result"] as? String == "succeeded")
            #expect((merged["actions"] as? [Any])?.count == 6)
            #expect((merged["mergedFrom"] as? [Any])?.count == 5)
            #expect(merged["shard"] == nil)
            #expect(try String(contentsOfFile: junit, encoding: .utf8).contains(#"tests="6" failures="0""#))
            #expect(try String(contentsOfFile: markdown, encoding: .utf8).contains("| shard 4 of 4 | ✅ succeeded | 1 | 0 |"))
        }
    }

    @Test("one shard failed: exit 1, and the console, the annotations and the summary name that shard")
    func oneShardFailed() throws {
        var reports = ["build/report.json": Self.build]
        for index in 1...4 { reports["shard-\(index)/report.json"] = Self.shard(index, result: index == 2 ? "failed" : "succeeded") }
        try Self.withReports(reports) { folder in
            let summary = folder.appendingPathComponent("step-summary.md")
            try Data("## Earlier step\n".utf8).write(to: summary)
            let files = reports.keys.sorted().map { folder.appendingPathComponent($0).path }
            let run = try Self.merge(files + ["--ci", "github"], environment: ["GITHUB_STEP_SUMMARY": summary.path])
            #expect(run.status == 1, "\(run)")
            #expect(run.out.contains("shard 2 of 4: failed, 1 action, 1 failed"), "\(run)")
            #expect(run.out.contains("FAILED distributeImage distribute/Lab2/Linux/Ubuntu.json in Lab2: CopyFailed"), "\(run)")
            #expect(run.out.contains("::error title=ImageFactory::shard 2 of 4 failed: 1 of 1 actions failed"), "\(run)")
            #expect(run.out.contains("Result: partially succeeded (exit 1)"), "only a distribution failed, as for one run: \(run)")
            // $GITHUB_STEP_SUMMARY is appended to, as GitHub documents.
            let markdown = try String(contentsOf: summary, encoding: .utf8)
            #expect(markdown.hasPrefix("## Earlier step\n## ImageFactory run 20261122-040000-merged"), "\(markdown)")
            #expect(markdown.contains("| shard 2 of 4 | ❌ failed | 1 | 1 |"), "\(markdown)")
        }
    }

    @Test("shards 1, 2 and 4 of 4: exit 1, and shard 3 is named missing everywhere")
    func oneShardMissing() throws {
        var reports = ["build/report.json": Self.build]
        for index in [1, 2, 4] { reports["shard-\(index)/report.json"] = Self.shard(index) }
        try Self.withReports(reports) { folder in
            let files = reports.keys.sorted().map { folder.appendingPathComponent($0).path }
            let markdown = folder.appendingPathComponent("summary.md").path
            let junit = folder.appendingPathComponent("junit.xml").path
            let run = try Self.merge(files + ["--summary-md", markdown, "--junit", junit, "--ci", "azure-devops"])
            #expect(run.status == 1, "\(run)")
            #expect(run.out.contains("  shard 3 of 4 is missing"), "\(run)")
            #expect(run.out.contains("error: shard 3 of 4 is missing: none of the 4 reports given is of it."), "\(run)")
            #expect(run.out.contains("##vso[task.logissue type=error;]shard 3 of 4 is missing"), "\(run)")
            #expect(run.out.contains("##vso[task.complete result=Failed;]"), "\(run)")
            #expect(run.out.contains("Result: failed (exit 1)"))
            let summary = try String(contentsOfFile: markdown, encoding: .utf8)
            #expect(summary.contains("❌ Failed") && summary.contains("shard 3 of 4 is missing"), "\(summary)")
            #expect(try String(contentsOfFile: junit, encoding: .utf8).contains(#"<testcase classname="imagefactory.shards" name="shard 3 of 4""#))
        }
    }

    @Test("--json prints the merged report alone on standard output")
    func jsonOutput() throws {
        try Self.withReports(["a.json": Self.shard(1, of: 2), "b.json": Self.shard(2, of: 2)]) { folder in
            let run = try Self.merge([folder.appendingPathComponent("a.json").path, folder.appendingPathComponent("b.json").path, "--json", "--ci", "none"])
            #expect(run.status == 0, "\(run)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(run.out.utf8)) as? [String: Any], "\(run)")
            #expect(object["runId"] as? String == "20261122-040000-merged")
            #expect(run.err.contains("Result: succeeded"))
        }
    }

    @Test("unreadable files, files that are no run report, and reports of another commit or split exit 2 naming the files; nothing is written")
    func inputErrors() throws {
        let other = "fedcba9876543210fedcba9876543210fedcba98"
        try Self.withReports(["s1.json": Self.shard(1), "s2.json": Self.shard(2, commit: other), "s3.json": Self.shard(3, of: 3),
                              "plan.json": ["formatVersion": 2, "factoryLab": "ImageFactory", "actions": [Any]()]]) { folder in
            func path(_ name: String) -> String { folder.appendingPathComponent(name).path }
            try Data("<testsuites/>".utf8).write(to: folder.appendingPathComponent("junit.xml"))
            let written = path("merged.json")

            let unreadable = try Self.merge([path("s1.json"), path("absent.json"), path("junit.xml"), path("plan.json"), folder.path, "--report-json", written])
            #expect(unreadable.status == 2, "\(unreadable)")
            #expect(unreadable.err.contains("\(path("absent.json")): error: There is no such report."), "\(unreadable)")
            #expect(unreadable.err.contains("\(path("junit.xml")): error: This file is not an imagefactory run report."), "\(unreadable)")
            #expect(unreadable.err.contains("\(path("plan.json")): error: This file is not an imagefactory run report."), "\(unreadable)")
            #expect(unreadable.err.contains("\(folder.path): error: This is a folder, not a report."), "\(unreadable)")
            #expect(unreadable.err.contains("hint: Give the JSON files written by --report-json"), "says what to do: \(unreadable)")

            let commits = try Self.merge([path("s1.json"), path("s2.json"), "--report-json", written])
            #expect(commits.status == 2, "\(commits)")
            #expect(commits.err.contains("different commits") && commits.err.contains("s1.json at 0123456789ab") && commits.err.contains("s2.json at fedcba987654"), "\(commits)")

            let splits = try Self.merge([path("s1.json"), path("s3.json"), "--report-json", written])
            #expect(splits.status == 2, "\(splits)")
            #expect(splits.err.contains("splits of different sizes"), "\(splits)")
            #expect(!FileManager.default.fileExists(atPath: written), "nothing is written when the reports are refused")
        }
    }

    @Test("`report --html FILE` still reaches the catalogue; `report merge` and its usage errors are its own")
    func reportStillWritesTheCatalogue() throws {
        let catalogue = try #require(try ImageFactoryCommand.parseAsRoot(["report", "--html", "x.html", "--repo", "/tmp"]) as? ReportCommand)
        #expect(catalogue.html == "x.html")
        #expect(try (ImageFactoryCommand.parseAsRoot(["report", "catalogue", "--html", "y.html"]) as? ReportCommand)?.html == "y.html")
        // The catalogue's own rule still holds, and does not reach merge's --json.
        #expect(throws: (any Error).self) { try ImageFactoryCommand.parseAsRoot(["report", "--html", "x.html", "--json"]) }
        let merge = try #require(try ImageFactoryCommand.parseAsRoot(["report", "merge", "a.json", "b.json", "--json", "--shards", "2"]) as? ReportMergeCommand)
        #expect(merge.reports == ["a.json", "b.json"] && merge.output.json && merge.shards == 2)
        for arguments in [["report", "merge"], ["report", "merge", "a.json", "--shards", "0"], ["report"]] {
            do {
                _ = try ImageFactoryCommand.parseAsRoot(arguments)
                Issue.record("\(arguments) parsed")
            } catch {
                #expect(ImageFactoryCommand.exitCode(for: error).rawValue == FactoryExitCode.usage.rawValue, "\(arguments): \(error)")
            }
        }
    }
}
