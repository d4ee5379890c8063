import FactoryEngine
import FactoryModel
import Foundation
import Testing
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import FactoryReports

/// `report merge` as a pure function: shard reports (and the build job's) in, the report a single run
/// would have written out, with every shard that failed or is missing named.
@Suite("Merging the reports of a sharded run")
struct ReportMergeTests {
    static let start = Date(timeIntervalSince1970: 1_795_323_000)
    static let commit = "0123456789abcdef0123456789abcdef01234567"

    static func action(_ id: String, _ stage: Stage, _ result: ActionResult.Outcome, target: String? = nil) -> RunReport.Action {
        let kind: ActionKind = stage == .build ? .buildVM : stage == .snap ? .captureImage : stage == .distribute ? .distributeImage : .retireImage
        return RunReport.Action(id: id, stage: stage, kind: kind, target: target, imagePath: "Linux/Ubuntu.json", imageName: "Linux_Ubuntu",
                                result: result, durationSeconds: 2, error: result == .failed ? "CopyFailed: 500 InternalError" : nil,
                                reason: "test", crossRegion: nil, galleryVersion: nil, replication: nil)
    }

    /// A report as a job writes it: `shard` is (index, count), nil for the build job.
    static func report(_ runId: String, shard: (Int, Int)?, _ actions: [RunReport.Action], diagnostics: [Diagnostic] = [],
                       commit: String? = commit, startMinute: Double = 0, minutes: Double = 10, backend: RunReport.Backend? = nil) -> RunReport {
        var report = RunReport(summary: RunSummary(runID: runId, commit: commit, results: [], diagnostics: []),
                               startedAt: start.addingTimeInterval(startMinute * 60), finishedAt: start.addingTimeInterval((startMinute + minutes) * 60))
        report.actions = actions
        report.diagnostics = diagnostics
        report.result = RunReport.classify(actions: actions, diagnostics: diagnostics)
        report.shard = shard.map { RunReport.Shard(index: $0.0, count: $0.1, subscriptions: ["s\($0.0)"], targets: ["Lab\($0.0)"]) }
        report.backend = backend
        return report
    }

    static var build: ReportMerge.Input {
        ReportMerge.Input(source: "build/report.json", report: report("build-run", shard: nil, [
            action("build/Linux/Ubuntu.json", .build, .succeeded), action("snap/Linux/Ubuntu.json", .snap, .succeeded)]))
    }

    /// Shard `index` of `count`, its distribution succeeding or failing, starting `startMinute` after the build.
    static func shard(_ index: Int, of count: Int = 4, _ result: ActionResult.Outcome = .succeeded, runId: String? = nil,
                      startMinute: Double = 30, minutes: Double = 10, source: String? = nil) -> ReportMerge.Input {
        ReportMerge.Input(source: source ?? "shard-\(index)/report.json", report: report(runId ?? "shard-run-\(index)", shard: (index, count), [
            action("distribute/Lab\(index)/Linux/Ubuntu.json", .distribute, result, target: "Lab\(index)"),
            action("retire/Lab\(index)/Linux_Ubuntu-old", .retire, .succeeded, target: "Lab\(index)")], startMinute: startMinute, minutes: minutes))
    }

    static func invalidInput(_ body: () throws -> RunReport) -> FactoryError? {
        do {
            _ = try body()
            return nil
        } catch let error as FactoryError {
            return error
        } catch {
            return nil
        }
    }

    @Test("every shard succeeded: one succeeded report, the build job's actions first, then each shard's in shard order")
    func allGood() throws {
        let inputs = [Self.shard(3), Self.shard(1), Self.build, Self.shard(4, startMinute: 31, minutes: 20), Self.shard(2)]
        let merged = try ReportMerge.merge(inputs, runID: "merged")
        #expect(merged.result == .succeeded)
        #expect(merged.runId == "merged" && merged.commit == Self.commit && merged.shard == nil)
        #expect(merged.formatVersion == RunReport.currentFormatVersion)
        #expect(merged.actions.map(\.id) == ["build/Linux/Ubuntu.json", "snap/Linux/Ubuntu.json"]
            + (1...4).flatMap { ["distribute/Lab\($0)/Linux/Ubuntu.json", "retire/Lab\($0)/Linux_Ubuntu-old"] })
        #expect(merged.startedAt == Self.start, "the earliest start: the build job's")
        #expect(merged.finishedAt == Self.start.addingTimeInterval(51 * 60), "the latest end: shard 4's")
        let parts = try #require(merged.mergedFrom)
        #expect(parts.map(\.label) == ["run build-run", "shard 1 of 4", "shard 2 of 4", "shard 3 of 4", "shard 4 of 4"])
        #expect(parts.allSatisfy { $0.result == .succeeded && $0.failed == 0 && $0.superseded == nil })
        #expect(parts[2] == RunReport.MergedPart(shard: 2, shardCount: 4, result: .succeeded, runId: "shard-run-2", source: "shard-2/report.json", actions: 2, failed: 0))
        #expect(merged.diagnostics.isEmpty)
    }

    @Test("a shard's failures give the result a single run with those failures would have")
    func failedShardFollowsTheSingleRunRule() throws {
        let inputs = [Self.build, Self.shard(1), Self.shard(2, .failed), Self.shard(3), Self.shard(4)]
        let merged = try ReportMerge.merge(inputs, runID: "merged")
        // Only a distribution failed while others succeeded: partially succeeded, as for one run.
        #expect(merged.result == .partiallySucceeded)
        #expect(merged.result == RunReport.classify(actions: inputs.flatMap(\.report.actions), diagnostics: []))
        let two = try #require(merged.mergedFrom?.first { $0.shard == 2 })
        #expect(two.result == .partiallySucceeded && two.failed == 1 && two.actions == 2)
        #expect(merged.failedActions.map(\.id) == ["distribute/Lab2/Linux/Ubuntu.json"])
        let markdown = MarkdownRenderer.render(merged)
        #expect(markdown.contains("| shard 2 of 4 | ⚠️ partially succeeded | 2 | 1 |"), "\(markdown)")
        #expect(markdown.contains("| shard 1 of 4 | ✅ succeeded | 2 | 0 |"))
        // A failed build in the build job's report fails the whole, as it fails a single run.
        var build = Self.build
        build.report.actions[0].result = .failed
        build.report.result = .failed
        let failed = try ReportMerge.merge([build, Self.shard(1), Self.shard(2), Self.shard(3), Self.shard(4)], runID: "merged")
        #expect(failed.result == .failed)
        #expect(failed.mergedFrom?.first?.result == .failed)
    }

    @Test("given shards 1, 2 and 4 of 4, shard 3 is missing: the result is failed and every view says so")
    func missingShard() throws {
        let merged = try ReportMerge.merge([Self.build, Self.shard(1), Self.shard(2), Self.shard(4)], runID: "merged")
        #expect(merged.actions.allSatisfy { $0.result == .succeeded }, "every action given succeeded")
        #expect(merged.result == .failed, "a missing shard fails the whole, whatever the others did")
        let missing = try #require(merged.mergedFrom?.first { $0.shard == 3 })
        #expect(missing == RunReport.MergedPart(shard: 3, shardCount: 4, result: .missing, runId: nil, source: nil, actions: 0, failed: 0))
        let error = try #require(merged.diagnostics.first)
        #expect(error.severity == .error && error.message.hasPrefix("shard 3 of 4 is missing"), "\(error)")
        #expect(merged.diagnostics.errors.count == 1)

        let markdown = MarkdownRenderer.render(merged)
        #expect(markdown.contains("❌ Failed"))
        #expect(markdown.contains("| shard 3 of 4 | ❌ missing | - | - |"), "\(markdown)")
        #expect(markdown.contains("shard 3 of 4 is missing"))

        let junit = JUnitRenderer.render(merged)
        let document = try XMLDocument(data: Data(junit.utf8))
        let root = try #require(document.rootElement())
        #expect(root.attribute(forName: "tests")?.stringValue == "\(merged.actions.count + 1)")
        #expect(root.attribute(forName: "failures")?.stringValue == "1")
        let shards = try #require(root.elements(forName: "testsuite").first { $0.attribute(forName: "name")?.stringValue == "shards" })
        let testcase = try #require(shards.elements(forName: "testcase").first)
        #expect(testcase.attribute(forName: "name")?.stringValue == "shard 3 of 4")
        #expect(!testcase.elements(forName: "failure").isEmpty)
    }

    @Test("with the count expected, shards are missing even when no shard report came at all")
    func expectedShardsWithNoShardReports() throws {
        let alone = try ReportMerge.merge([Self.build], runID: "merged")
        #expect(alone.result == .succeeded && alone.mergedFrom?.count == 1, "without a count, a build alone is a whole run")
        let merged = try ReportMerge.merge([Self.build], expectedShards: 2, runID: "merged")
        #expect(merged.result == .failed)
        #expect(merged.mergedFrom?.filter { $0.result == .missing }.map(\.label) == ["shard 1 of 2", "shard 2 of 2"])
        #expect(merged.diagnostics.errors.map(\.message).allSatisfy { $0.contains(" of 2 is missing") })
    }

    @Test("the same shard twice: the newest report is its outcome, and a warning names the one it replaced")
    func duplicateShardNewestWins() throws {
        let first = Self.shard(2, of: 2, .failed, runId: "attempt-1", startMinute: 30, source: "attempt-1/shard-2.json")
        let retry = Self.shard(2, of: 2, .succeeded, runId: "attempt-2", startMinute: 45, source: "attempt-2/shard-2.json")
        // Given in either order, the newer run wins.
        for inputs in [[Self.build, Self.shard(1, of: 2), first, retry], [Self.build, retry, Self.shard(1, of: 2), first]] {
            let merged = try ReportMerge.merge(inputs, runID: "merged")
            #expect(merged.result == .succeeded, "the retried shard succeeded")
            #expect(merged.actions.filter { $0.target == "Lab2" }.count == 2, "one shard 2's actions, not both")
            let two = try #require(merged.mergedFrom?.first { $0.shard == 2 })
            #expect(two.runId == "attempt-2" && two.superseded == ["attempt-1/shard-2.json"])
            let warning = try #require(merged.diagnostics.first { $0.severity == .warning })
            #expect(warning.message.hasPrefix("shard 2 of 2 has 2 reports") && warning.message.contains("attempt-2/shard-2.json")
                    && warning.message.contains("attempt-1/shard-2.json is ignored"), "\(warning.message)")
        }
        // The same report given twice (an overlapping glob) counts once, without a warning.
        let twice = try ReportMerge.merge([Self.build, Self.shard(1, of: 2), Self.shard(2, of: 2), Self.shard(2, of: 2, source: "copy/shard-2.json"), Self.build],
                                          runID: "merged")
        #expect(twice.actions.count == 6 && twice.diagnostics.isEmpty && twice.mergedFrom?.count == 3)
    }

    @Test("reports of splits of different sizes, or against an expected count, are refused naming the files")
    func differentShardCounts() throws {
        let mixed = try #require(Self.invalidInput { try ReportMerge.merge([Self.shard(1, of: 4), Self.shard(2, of: 3)], runID: "m") })
        #expect(mixed.exitCode == .invalidInput)
        let message = mixed.diagnostics.map(\.message).joined(separator: "\n")
        #expect(message.contains("shard-1/report.json is a shard of 4") && message.contains("shard-2/report.json is a shard of 3"), "\(message)")
        let expected = try #require(Self.invalidInput { try ReportMerge.merge([Self.shard(1, of: 3), Self.shard(2, of: 3)], expectedShards: 4, runID: "m") })
        #expect(expected.diagnostics.first?.message == "shard-1/report.json and shard-2/report.json are shards of a split in 3, not in the 4 expected.")
        #expect(expected.diagnostics.first?.hint != nil)
        let impossible = try #require(Self.invalidInput { try ReportMerge.merge([Self.shard(5, of: 4)], runID: "m") })
        #expect(impossible.diagnostics.first?.message.contains("shard 5 of 4, which cannot be") == true)
    }

    @Test("reports of another commit are refused, naming each commit's files; a report without a commit goes with any")
    func otherCommit() throws {
        var other = Self.shard(2)
        other.report.commit = "fedcba9876543210fedcba9876543210fedcba98"
        let error = try #require(Self.invalidInput { try ReportMerge.merge([Self.build, Self.shard(1), other], runID: "m") })
        #expect(error.exitCode == .invalidInput)
        let message = try #require(error.diagnostics.first?.message)
        #expect(message.contains("different commits") && message.contains("build/report.json and shard-1/report.json at 0123456789ab")
                && message.contains("shard-2/report.json at fedcba987654"), "\(message)")
        // Several problems are reported at once.
        var otherCount = Self.shard(3, of: 3)
        otherCount.report.commit = nil
        let both = try #require(Self.invalidInput { try ReportMerge.merge([Self.build, Self.shard(1), other, otherCount], runID: "m") })
        #expect(both.diagnostics.count == 2)

        var stopped = Self.shard(2)
        stopped.report.commit = nil
        let merged = try ReportMerge.merge([Self.build, Self.shard(1), stopped], runID: "m")
        #expect(merged.commit == Self.commit)
    }

    @Test("diagnostics every shard repeats appear once; backend counts are summed")
    func diagnosticsAndBackend() throws {
        let warning = Diagnostic.warning("Lab QALab has a VM the factory does not know.", file: "Configuration/Labs.json", line: 3)
        func backend(_ correlation: String, _ n: Int) -> RunReport.Backend {
            RunReport.Backend(kind: "azure", correlationId: correlation, armReads: n, armWrites: 1, storageReads: n, storageWrites: 2, retries: 1, throttled: 0)
        }
        var one = Self.shard(1, of: 2), two = Self.shard(2, of: 2)
        one.report.diagnostics = [warning]
        two.report.diagnostics = [warning, .note("2 retire actions were left out.")]
        one.report.backend = backend("c1", 10)
        two.report.backend = backend("c2", 5)
        let merged = try ReportMerge.merge([one, two], runID: "m")
        #expect(merged.diagnostics == [warning, .note("2 retire actions were left out.")])
        #expect(merged.result == .succeeded)
        #expect(merged.backend == RunReport.Backend(kind: "azure", correlationId: nil, armReads: 15, armWrites: 2, storageReads: 15, storageWrites: 4, retries: 2, throttled: 0))
        two.report.backend = backend("c1", 5)
        #expect(try ReportMerge.merge([one, two], runID: "m").backend?.correlationId == "c1", "kept when every report agrees")
        #expect(try ReportMerge.merge([Self.shard(1, of: 1)], runID: "m").backend == nil)
    }

    @Test("a merged report round-trips through JSON; files that are no run report are refused with what to give")
    func decoding() throws {
        let merged = try ReportMerge.merge([Self.build, Self.shard(1), Self.shard(2, .failed), Self.shard(4)], runID: "merged")
        let data = try merged.encoded()
        #expect(try RunReport.decode(data) == merged)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let parts = try #require(object["mergedFrom"] as? [[String: Any]])
        #expect(parts.count == 5 && parts[3]["result"] as? String == "missing" && parts[3]["shard"] as? Int == 3)

        // A single run's report has no mergedFrom, and older reports decode without it.
        let single = try RunReport.decode(try Self.shard(1).report.encoded())
        #expect(single.mergedFrom == nil && single.shard?.index == 1)

        func refused(_ text: String) -> Diagnostic? {
            do {
                _ = try RunReport.decode(Data(text.utf8))
                return nil
            } catch let error as FactoryError {
                return error.diagnostics.first
            } catch {
                return nil
            }
        }
        let plan = refused(#"{"formatVersion": 2, "factoryLab": "ImageFactory", "actions": []}"#)
        #expect(plan?.message == "This file is not an imagefactory run report.")
        #expect(plan?.hint?.contains("--report-json") == true)
        #expect(refused(#"<?xml version="1.0"?><testsuites/>"#)?.message == "This file is not an imagefactory run report.")
        #expect(refused(#"{"formatVersion": 9, "runId": "r", "result": "succeeded"}"#)?.message.contains("format version 9, newer") == true)
        var broken = try #require(try JSONSerialization.jsonObject(with: Self.shard(1).report.encoded()) as? [String: Any])
        var actions = try #require(broken["actions"] as? [[String: Any]])
        actions[1]["stage"] = "paint"
        broken["actions"] = actions
        let text = String(decoding: try JSONSerialization.data(withJSONObject: broken), as: UTF8.self)
        let bad = try #require(refused(text))
        #expect(bad.message.hasPrefix("The run report does not decode") && bad.message.contains("actions[1].stage"), "\(bad.message)")
    }
}
