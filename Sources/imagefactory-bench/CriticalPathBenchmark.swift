// The critical path of a whole run, on the local cloud with scaled-down times:
//
//   imagefactory-bench critical-path [--labs 50] [--templates 10] [--fast 1] [--slow-factor 10] [--max-jobs 20]
//
// One slow template (slow-factor × the others' build time) and templates-1 fast ones, every lab
// taking every image: the time until the first lab has its first image, and the makespan, with
// stage barriers (the old executor) and with overlapping stages, and the overlapping run against
// its critical-path lower bound: the longer of the slow image's chain (build, shutdown, capture,
// copy, image) and the total work divided by the concurrency limit.
import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud

enum CriticalPathBenchmark {
    struct Outcome {
        var firstImage: Double
        var makespan: Double
        var failed: Int
    }

    /// When the first distribution finished and the run as a whole, from the executor's events.
    final class Times: @unchecked Sendable {
        // @unchecked: `lock` guards every field.
        private let lock = NSLock()
        private var first: Date?
        func distributed(_ result: ActionResult) {
            lock.lock()
            defer { lock.unlock() }
            if result.action.stage == .distribute, result.outcome == .succeeded, first == nil || result.end < first! { first = result.end }
        }
        var firstDistribution: Date? {
            lock.lock()
            defer { lock.unlock() }
            return first
        }
    }

    static func run(arguments: [String]) async throws {
        let args = try BenchArguments(arguments, flags: ["--labs", "--templates", "--fast", "--slow-factor", "--max-jobs", "--fanout", "--copy-seconds"], switches: [],
                                      usage: "imagefactory-bench critical-path [--labs N] [--templates N] [--fast S] [--slow-factor F] [--max-jobs N] [--fanout 1,8,64,256] [--copy-seconds S]")
        let fanoutCounts = try (args.string("--fanout") ?? "1,8,64,256").split(separator: ",").map { text -> Int in
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= 1 else { throw BenchError("--fanout needs lab counts >= 1") }
            return n
        }
        let copySeconds = try args.double("--copy-seconds", default: 0.1)
        let labs = try args.int("--labs", default: 50)
        let templates = try args.int("--templates", default: 10)
        let fast = try args.double("--fast", default: 1)
        let slowFactor = try args.double("--slow-factor", default: 10)
        let maxJobs = try args.int("--max-jobs", default: 20)
        var latency = LatencyProfile.instant
        latency.name = "bench-critical-path"
        latency.shutdown = 0.1
        latency.copyBase = 0.2
        latency.customImage = 0.1
        latency.delete = 0.05
        print("factory:     \(templates) templates (1 builds in \(fast * slowFactor) s, \(templates - 1) in \(fast) s), \(labs) labs taking every image, at most \(maxJobs) jobs")
        print("local cloud: shutdown \(latency.shutdown) s, copy \(latency.copyBase) s, image \(latency.customImage) s, delete \(latency.delete) s")

        var outcomes: [Bool: Outcome] = [:]
        for barriers in [true, false] {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("imagefactory-bench-critical-path-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let cloud = try LocalCloud(stateDirectory: directory, settings: LocalCloudSettings(latency: latency, throttle: .off, faults: .none))
            let factory = SyntheticFactory(labs: labs, templates: templates, folderSize: templates, maxConcurrentJobs: maxJobs,
                                           everyLabTakesEverything: true, buildSeconds: { $0 == 0 ? fast * slowFactor : fast })
            let configuration = try factory.configuration()
            try await factory.createLabs(in: cloud, configuration)
            var runner = FactoryRunner(backend: cloud, configuration: configuration)
            runner.stageBarriers = barriers
            // No source bandwidth is emulated here, so copies go as a star (the fan-out part below measures trees).
            runner.treeCopies = false
            let (plan, _) = try await runner.plan()
            let times = Times()
            let start = Date()
            let summary = try await runner.execute(plan, runID: barriers ? "barriers" : "overlap", stages: Set(Stage.allCases),
                                                   requireSamePlanBasis: false) { event in
                if case .actionFinished(let result) = event { times.distributed(result) }
            }
            let end = Date()
            let outcome = Outcome(firstImage: (times.firstDistribution ?? end).timeIntervalSince(start), makespan: end.timeIntervalSince(start),
                                  failed: summary.failed.count)
            outcomes[barriers] = outcome
            print(String(format: "%@ first image after %6.2f s, makespan %6.2f s, %d actions, %d failed",
                         (barriers ? "stage barriers:  " : "overlapping:     ") as NSString, outcome.firstImage, outcome.makespan,
                         summary.results.count, outcome.failed))
        }
        // The lower bound: the slow image's chain, or all the work spread over every slot.
        let chain = fast * slowFactor + latency.shutdown + latency.copyBase + latency.copyBase + latency.customImage
        let distributionWork = Double(labs * templates) * (latency.copyBase + latency.customImage)
        let buildWork = fast * slowFactor + Double(templates - 1) * fast + Double(templates) * (latency.shutdown + latency.copyBase + latency.delete)
        let bound = max(chain, (distributionWork + buildWork) / Double(maxJobs))
        let before = outcomes[true]!, after = outcomes[false]!
        let ratio = after.makespan / bound
        print(String(format: "lower bound: %.2f s (chain %.2f s, work %.2f s over %d slots); overlapping makespan / bound = %.3f",
                     bound, chain, (distributionWork + buildWork) / Double(maxJobs), maxJobs, ratio))
        let criticalMet = ratio <= 1.10 && before.failed == 0 && after.failed == 0
        print("verdict:     " + (criticalMet ? "within 10% of the critical path — target met" : "more than 10% above the critical path (or failures) — target missed"))

        // Fan-out: one image to N labs in the factory's region, every copy of a source sharing its read bandwidth.
        print("")
        print("fan-out:     1 image to N labs in one region; a source's read bandwidth is shared by its copies; one copy alone takes \(copySeconds) s")
        var fanout: [String: Any] = [:]
        var fanoutFailures = 0
        for n in fanoutCounts {
            var row: [String: Double] = [:]
            for tree in [false, true] {
                let (seconds, failed) = try await fanoutRun(labs: n, tree: tree, copySeconds: copySeconds)
                row[tree ? "tree" : "star"] = round3(seconds)
                fanoutFailures += failed
            }
            let levels = Double(Int.bitWidth - (n + 1 - 1).leadingZeroBitCount)  // ⌈log2(N+1)⌉
            row["bound"] = round3(levels * copySeconds)
            fanout[String(n)] = row
            print(String(format: "  N=%4d  star %7.2f s  tree %6.2f s  bound ⌈log2(N+1)⌉ × copy = %5.2f s  (tree / bound %.2f)", n, row["star"]!, row["tree"]!,
                         row["bound"]!, row["tree"]! / max(0.001, row["bound"]!)))
        }
        let met = criticalMet && fanoutFailures == 0
        let json: [String: Any] = [
            "firstImageSeconds": ["before": round3(before.firstImage), "after": round3(after.firstImage)],
            "makespanSeconds": ["before": round3(before.makespan), "after": round3(after.makespan)],
            "criticalPathSeconds": round3(bound),
            "criticalPathRatio": round3(ratio),
            "fanout": fanout,
        ]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
        if !met { exit(1) }
    }

    static func round3(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

    /// The distribute stage of one image to `labs` labs in the factory's region, as a star or a tree,
    /// with the source bandwidth set so that one copy alone takes `copySeconds`.
    static func fanoutRun(labs: Int, tree: Bool, copySeconds: Double) async throws -> (Double, Int) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("imagefactory-bench-fanout-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var latency = LatencyProfile.instant
        latency.name = "bench-fanout"
        let factory = SyntheticFactory(labs: labs, templates: 1, folderSize: 1, maxConcurrentJobs: max(20, labs), singleRegion: "westeurope",
                                       everyLabTakesEverything: true)
        let configuration = try factory.configuration()
        do {
            // Build and capture with no bandwidth limit; only the copies are measured.
            let cloud = try LocalCloud(stateDirectory: directory, settings: LocalCloudSettings(latency: latency, throttle: .off, faults: .none))
            try await factory.createLabs(in: cloud, configuration)
            let runner = FactoryRunner(backend: cloud, configuration: configuration)
            let captured = try await runner.execute(try await runner.plan().0, runID: "capture", stages: [Stage.build, Stage.snap], requireSamePlanBasis: false, events: { _ in })
            guard captured.succeeded else { throw BenchError("the capture failed") }
        }
        // The VHD's data bytes set the bandwidth: one copy alone reads them in `copySeconds`.
        let blobs = directory.appendingPathComponent("blobs")
        let data = try FileManager.default.contentsOfDirectory(at: blobs, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "vhd" }.map(SparseFile.allocatedBytes).max() ?? 0
        guard data > 0 else { throw BenchError("no captured VHD to copy") }
        latency.sourceBytesPerSecond = Double(data) / copySeconds
        let cloud = try LocalCloud(stateDirectory: directory, settings: LocalCloudSettings(latency: latency, throttle: .off, faults: .none))
        var runner = FactoryRunner(backend: cloud, configuration: configuration)
        runner.treeCopies = tree
        let (plan, _) = try await runner.plan()
        let start = Date()
        let summary = try await runner.execute(plan, runID: tree ? "tree" : "star", stages: [Stage.distribute], requireSamePlanBasis: false, events: { _ in })
        return (Date().timeIntervalSince(start), summary.failed.count)
    }
}
