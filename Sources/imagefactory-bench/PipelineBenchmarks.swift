// Benchmarks of the pipeline engine: planning at scale, bounded distribution on the local cloud,
// and what a no-change run costs.
//
//   imagefactory-bench plan       [--labs 2000] [--templates 500] [--images 20000] [--iterations 7]
//   imagefactory-bench distribute [--labs 20] [--templates 20] [--max-jobs 20] [--job-seconds 0.5] [--dir PATH] [--keep]
//   imagefactory-bench nochange   [--labs 10,50,200] [--templates 5] [--dir PATH] [--keep]
//
// Each prints its figures and a verdict, and exits 1 when its target is missed.
import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud

enum PipelineBenchmarks {
    static let usage = """
        usage: imagefactory-bench plan       [--labs N] [--templates N] [--images N] [--iterations N]
               imagefactory-bench distribute [--labs N] [--templates N] [--max-jobs N] [--job-seconds S] [--dir PATH] [--keep]
               imagefactory-bench nochange   [--labs N,N,...] [--templates N] [--dir PATH] [--keep]

          plan        times FactoryPlanner.plan on a generated configuration (default 2,000 labs, 500 templates)
                      and a synthetic inventory (default 20,000 custom images in the labs).
                      Target: under 1 s and under 300 MB peak RSS.
          distribute  runs the distribute stage on the local cloud: every lab subscribes to every template
                      (default 20 × 20 = 400 jobs), at most --max-jobs (20) at once, each job's copy taking
                      --job-seconds (0.5). Target: wall time within 5% of ceil(jobs / max-jobs) × job-seconds,
                      and never more than --max-jobs jobs overlapping in operations.jsonl.
          nochange    runs the whole factory twice per lab count (default 10, 50, 200 labs, 5 templates each)
                      and counts the second run's operations. Target: no writes, and reads growing by a few
                      per lab (fewer than the templates each lab takes), not labs × images.
        """

    // MARK: - plan

    /// Each entry point exits 1 when its target is missed, after the measuring function has returned
    /// (so its temporary state directory is gone).
    static func plan(arguments: [String]) throws {
        if try !measurePlan(arguments) { exit(1) }
    }

    static func distribute(arguments: [String]) async throws {
        if try await !measureDistribute(arguments) { exit(1) }
    }

    static func noChange(arguments: [String]) async throws {
        if try await !measureNoChange(arguments) { exit(1) }
    }

    static func measurePlan(_ arguments: [String]) throws -> Bool {
        let args = try BenchArguments(arguments, flags: ["--labs", "--templates", "--images", "--iterations"], usage: usage)
        let labCount = try args.int("--labs", default: 2_000)
        let templateCount = try args.int("--templates", default: 500)
        let imageCount = try args.int("--images", default: 20_000, min: 0)
        let iterations = try args.int("--iterations", default: 7)

        let generateStart = ContinuousClock.now
        let generator = SyntheticFactory(labs: labCount, templates: templateCount, folderSize: 10)
        let configuration = try generator.configuration()
        let now = Date(timeIntervalSince1970: 1_795_323_000)  // 2026-11-22T04:50:00Z, so image names are stable
        let inventory = generator.inventory(configuration, images: imageCount, now: now)
        let generateSeconds = seconds(since: generateStart)
        let subscriptions = configuration.labs.reduce(0) { $0 + $1.images.count }
        print(String(format: "input:      %d labs (%d lab × template subscriptions), %d templates; inventory: %d custom images in labs, %d records, %d factory blobs, %d deployments (generated in %.2f s)",
                     configuration.labs.count, subscriptions, configuration.templates.count, inventory.labs.reduce(0) { $0 + $1.images.count },
                     inventory.records.count, inventory.factoryBlobs.count, inventory.deployments.count, generateSeconds))
        print("rss before planning: \(formatMB(procStatusKB("VmRSS"))), peak so far \(formatMB(procStatusKB("VmHWM")))")

        var times: [Double] = []
        var last: Plan?
        for i in 1...iterations {
            last = nil
            let start = ContinuousClock.now
            let plan = FactoryPlanner.plan(configuration, inventory: inventory, options: PlanOptions(now: now))
            let elapsed = seconds(since: start)
            times.append(elapsed)
            print(String(format: "run %2d:     %8.1f ms  (%d actions)", i, elapsed * 1000, plan.actions.count))
            last = plan
        }
        let peakKB = procStatusKB("VmHWM")
        guard let plan = last else { return false }
        var byKind: [String: Int] = [:]
        for action in plan.actions { byKind[action.kind.rawValue, default: 0] += 1 }
        print("actions:    " + byKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("diagnostics: \(plan.diagnostics.errors.count) errors, \(plan.diagnostics.warnings.count) warnings")
        let best = times.min()!, middle = medianOf(times)
        print(String(format: "plan:       best %.1f ms  median %.1f ms  (%d iterations)", best * 1000, middle * 1000, iterations))
        print("peak RSS:   \(formatMB(peakKB)) (VmHWM, whole process: configuration, inventory and plans)")
        let fast = middle < 1.0
        let small = (peakKB ?? 0) < 300 * 1024
        print("verdict:    median \(fast ? "under" : "OVER") 1 s, peak RSS \(small ? "under" : "OVER") 300 MB — target \(fast && small ? "met" : "MISSED")")
        return fast && small
    }

    // MARK: - distribute

    static func measureDistribute(_ arguments: [String]) async throws -> Bool {
        let args = try BenchArguments(arguments, flags: ["--labs", "--templates", "--max-jobs", "--job-seconds", "--dir"],
                                      switches: ["--keep"], usage: usage)
        let labCount = try args.int("--labs", default: 20)
        let templateCount = try args.int("--templates", default: 20)
        let maxJobs = try args.int("--max-jobs", default: 20)
        let jobSeconds = try args.double("--job-seconds", default: 0.5)
        let directory = try freshDirectory(args.string("--dir"), name: "distribute")
        defer { if !args.has("--keep") { try? FileManager.default.removeItem(at: directory) } }

        // Only the copy takes time: a distribution job is one blob copy, a custom image and a blob deletion.
        var latency = LatencyProfile.instant
        latency.name = "bench-distribute"
        latency.copyBase = jobSeconds
        let cloud = try LocalCloud(stateDirectory: directory, settings: LocalCloudSettings(latency: latency, throttle: .off, faults: .none))
        let factory = SyntheticFactory(labs: labCount, templates: templateCount, folderSize: templateCount, maxConcurrentJobs: maxJobs,
                                       everyLabTakesEverything: true)
        let configuration = try factory.configuration()
        try await factory.createLabs(in: cloud, configuration)
        print("local cloud: \(directory.path) (copy \(jobSeconds) s, every other latency 0, throttling off)")

        // Capture the images first (build + snap), so the distribute stage has records to copy.
        let setupStart = ContinuousClock.now
        let runner = FactoryRunner(backend: cloud, configuration: configuration)
        let (capturePlan, _) = try await runner.plan()
        let captured = try await runner.execute(capturePlan, runID: "bench-capture", stages: [.build, .snap], requireSamePlanBasis: false, events: { _ in })
        guard captured.succeeded else {
            throw BenchError("capturing the images failed: " + captured.failed.map { "\($0.action.id): \($0.message ?? "")" }.joined(separator: "; "))
        }
        print(String(format: "setup:       %d labs, %d templates captured in %.2f s", labCount, templateCount, seconds(since: setupStart)))

        // The distribute stage, timed from its start event to its finish event.
        let (plan, _) = try await runner.plan()
        let jobs = plan.actions(in: .distribute).count
        guard jobs == labCount * templateCount else { throw BenchError("expected \(labCount * templateCount) distribution jobs, the plan has \(jobs)") }
        let log = directory.appendingPathComponent("operations.jsonl")
        let linesBefore = try OperationLog.lineCount(log)
        let stageTimes = StageTimes()
        let runID = "bench-distribute"
        let summary = try await runner.execute(plan, runID: runID, stages: [.distribute], requireSamePlanBasis: false) { event in
            switch event {
            case .stageStarted(.distribute, _): stageTimes.mark(start: true)
            case .stageFinished(.distribute, _, _, _): stageTimes.mark(start: false)
            default: break
            }
        }
        guard summary.succeeded, summary.results.count == jobs else {
            throw BenchError("the distribute stage failed: " + summary.failed.prefix(5).map { "\($0.action.id): \($0.message ?? "")" }.joined(separator: "; "))
        }
        let (start, end) = stageTimes.value
        guard let start, let end else { throw BenchError("the distribute stage reported no start or finish") }
        let wall = durationSeconds(end - start)
        let waves = (jobs + maxJobs - 1) / maxJobs
        let ideal = Double(waves) * jobSeconds
        let overhead = (wall - ideal) / ideal * 100

        // Overlap of the jobs as the cloud saw them: each job spans its first operation's start to its last one's end.
        let entries = try OperationLog.entries(log, afterLine: linesBefore).filter { $0.run == runID }
        var spans: [String: (start: Date, end: Date)] = [:]
        for entry in entries {
            guard let job = entry.job, job.hasPrefix("distribute/") else { continue }
            let (s, e) = (try entry.startDate(), try entry.endDate())
            if let span = spans[job] { spans[job] = (min(span.start, s), max(span.end, e)) } else { spans[job] = (s, e) }
        }
        let overlap = OperationLog.maximumOverlap(spans.values.map { ($0.start, $0.end) })
        let durations = spans.values.map { $0.end.timeIntervalSince($0.start) }.sorted()
        let operationsPerJob = Double(entries.filter { $0.job?.hasPrefix("distribute/") == true }.count) / Double(max(1, spans.count))

        print(String(format: "jobs:        %d distribution jobs (%d labs × %d templates), at most %d at once", jobs, labCount, templateCount, maxJobs))
        print(String(format: "stage:       %.3f s wall; ideal %d waves × %.3f s = %.3f s; overhead %.2f%%", wall, waves, jobSeconds, ideal, overhead))
        print(String(format: "per job:     span in operations.jsonl min %.3f s  median %.3f s  max %.3f s; %.1f operations a job",
                     durations.first ?? 0, medianOf(durations), durations.last ?? 0, operationsPerJob))
        print("overlap:     at most \(overlap) jobs at once in operations.jsonl (\(spans.count) jobs seen; limit \(maxJobs))")
        let quick = overhead <= 5
        let bounded = overlap <= maxJobs && spans.count == jobs
        print("verdict:     overhead \(quick ? "within" : "OVER") 5%, concurrency \(bounded ? "within" : "OVER") the limit — target \(quick && bounded ? "met" : "MISSED")")
        if args.has("--keep") { print("kept:        \(directory.path)") }
        return quick && bounded
    }

    // MARK: - nochange

    static func measureNoChange(_ arguments: [String]) async throws -> Bool {
        let args = try BenchArguments(arguments, flags: ["--labs", "--templates", "--dir"], switches: ["--keep"], usage: usage)
        let labCounts = try (args.string("--labs") ?? "10,50,200").split(separator: ",").map { text -> Int in
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= 1 else { throw BenchError("--labs needs a list of integers >= 1, not \"\(text)\"") }
            return n
        }
        guard labCounts.count >= 2 else { throw BenchError("--labs needs at least two lab counts, to see how reads grow") }
        let templateCount = try args.int("--templates", default: 5)
        let root = try freshDirectory(args.string("--dir"), name: "nochange")
        defer { if !args.has("--keep") { try? FileManager.default.removeItem(at: root) } }
        print("local cloud: \(root.path) (instant latency, throttling off), \(templateCount) templates, every lab takes every one")
        print("  labs  first run (actions, s)   second run: reads  writes  reads/lab   time")

        var rows: [(labs: Int, reads: Int, writes: Int)] = []
        for labCount in labCounts {
            let directory = root.appendingPathComponent("labs-\(labCount)")
            let settings = LocalCloudSettings(latency: .instant, throttle: .off, faults: .none)
            let factory = SyntheticFactory(labs: labCount, templates: templateCount, folderSize: templateCount, everyLabTakesEverything: true)
            let configuration = try factory.configuration()

            // First run: everything is built and distributed.
            let firstStart = ContinuousClock.now
            let first: RunSummary
            do {
                let cloud = try LocalCloud(stateDirectory: directory, settings: settings)
                try await factory.createLabs(in: cloud, configuration)
                let runner = FactoryRunner(backend: cloud, configuration: configuration)
                let (plan, _) = try await runner.plan()
                first = try await runner.execute(plan, runID: "bench-first", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in })
            }
            guard first.succeeded else {
                throw BenchError("the first run with \(labCount) labs failed: " + first.failed.prefix(5).map { "\($0.action.id): \($0.message ?? "")" }.joined(separator: "; "))
            }
            let firstSeconds = seconds(since: firstStart)

            // Second run, as a new process would do it: a fresh cloud handle and runner; count what it appends to the log.
            let log = directory.appendingPathComponent("operations.jsonl")
            let linesBefore = try OperationLog.lineCount(log)
            let secondStart = ContinuousClock.now
            let cloud = try LocalCloud(stateDirectory: directory, settings: settings)
            let runner = FactoryRunner(backend: cloud, configuration: configuration)
            let (plan, _) = try await runner.plan()
            let second = try await runner.execute(plan, runID: "bench-second", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in })
            let secondSeconds = seconds(since: secondStart)
            guard plan.actions.isEmpty, second.results.isEmpty else {
                throw BenchError("the second run with \(labCount) labs planned \(plan.actions.count) actions: " + plan.actions.prefix(5).map(\.id).joined(separator: ", "))
            }
            let entries = try OperationLog.entries(log, afterLine: linesBefore)
            let writes = entries.filter { $0.write || !OperationLog.isRead($0.kind) }.count
            let reads = entries.count - writes
            rows.append((labCount, reads, writes))
            print(String(format: "%6d  %6d actions in %6.2f s   %11d  %6d  %9.2f   %.2f s", labCount, first.results.count, firstSeconds,
                         reads, writes, Double(reads) / Double(labCount), secondSeconds))
            if writes > 0 {
                var kinds: [String: Int] = [:]
                for entry in entries where entry.write || !OperationLog.isRead(entry.kind) { kinds[entry.kind, default: 0] += 1 }
                print("        writes: " + kinds.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            }
        }

        // Reads against labs: the slope (reads per added lab) and the constant part.
        let (low, high) = (rows.min { $0.labs < $1.labs }!, rows.max { $0.labs < $1.labs }!)
        let slope = Double(high.reads - low.reads) / Double(high.labs - low.labs)
        let constant = Double(low.reads) - slope * Double(low.labs)
        let linear = rows.allSatisfy { abs(Double($0.reads) - (constant + slope * Double($0.labs))) <= 0.5 }
        print(String(format: "reads:       %.2f per lab + %.1f (%@; labs × images would be at least %d per lab)",
                     slope, constant, linear ? "exactly linear in labs" : "NOT linear in labs", templateCount))
        let noWrites = rows.allSatisfy { $0.writes == 0 }
        let fewReads = linear && slope < Double(templateCount)
        print("verdict:     \(noWrites ? "no writes" : "WRITES in a no-change run"), reads \(fewReads ? "grow per lab, not per lab × image" : "grow TOO FAST") — target \(noWrites && fewReads ? "met" : "MISSED")")
        if args.has("--keep") { print("kept:        \(root.path)") }
        return noWrites && fewReads
    }

    // MARK: - Helpers

    static func seconds(since start: ContinuousClock.Instant) -> Double { durationSeconds(ContinuousClock.now - start) }

    static func durationSeconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func medianOf(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// A new state directory: the one given (which must not exist yet) or a fresh temporary one.
    static func freshDirectory(_ path: String?, name: String) throws -> URL {
        let directory = path.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("imagefactory-bench-\(name)-\(UUID().uuidString)")
        if FileManager.default.fileExists(atPath: directory.path) {
            throw BenchError("\(directory.path) exists; pass a new --dir (the benchmark needs an empty local cloud)")
        }
        return directory
    }
}

/// When the distribute stage started and finished, written from the executor's event callback.
/// The one lock-box here: the callback is synchronous and `Mutex` needs macOS 15.
final class StageTimes: @unchecked Sendable {
    private let lock = NSLock()
    private var start: ContinuousClock.Instant?
    private var end: ContinuousClock.Instant?

    func mark(start isStart: Bool) {
        let now = ContinuousClock.now
        lock.withLock { if isStart { start = now } else { end = now } }
    }

    var value: (ContinuousClock.Instant?, ContinuousClock.Instant?) { lock.withLock { (start, end) } }
}

// MARK: - Arguments

/// `--flag value`, `--flag=value` and `--switch`, parsed by hand (this target must not depend on ArgumentParser).
struct BenchArguments {
    private var values: [String: String] = [:]
    private var switches: Set<String> = []

    init(_ arguments: [String], flags: Set<String>, switches known: Set<String> = [], usage: String) throws {
        var rest = arguments[...]
        while var flag = rest.popFirst() {
            if flag.hasPrefix("--"), let eq = flag.firstIndex(of: "=") {
                rest.insert(String(flag[flag.index(after: eq)...]), at: rest.startIndex)
                flag = String(flag[..<eq])
            }
            if flag == "-h" || flag == "--help" {
                print(usage)
                exit(0)
            } else if known.contains(flag) {
                switches.insert(flag)
            } else if flags.contains(flag) {
                guard let value = rest.popFirst() else { throw BenchError("\(flag) needs a value") }
                values[flag] = value
            } else {
                throw BenchError("unknown option \(flag)\n\n\(usage)")
            }
        }
    }

    func has(_ flag: String) -> Bool { switches.contains(flag) }
    func string(_ flag: String) -> String? { values[flag] }

    func int(_ flag: String, default value: Int, min: Int = 1) throws -> Int {
        guard let text = values[flag] else { return value }
        guard let n = Int(text), n >= min else { throw BenchError("\(flag) needs an integer >= \(min), not \"\(text)\"") }
        return n
    }

    func double(_ flag: String, default value: Double) throws -> Double {
        guard let text = values[flag] else { return value }
        guard let n = Double(text), n > 0 else { throw BenchError("\(flag) needs a number > 0, not \"\(text)\"") }
        return n
    }
}

// MARK: - operations.jsonl

enum OperationLog {
    /// One line of the local cloud's audit trail (the fields the benchmarks need).
    struct Entry: Decodable {
        var start: String
        var end: String
        var kind: String
        var write: Bool
        var job: String?
        var run: String?

        func startDate() throws -> Date { try OperationLog.date(start) }
        func endDate() throws -> Date { try OperationLog.date(end) }
    }

    static func lineCount(_ url: URL) throws -> Int {
        guard FileManager.default.fileExists(atPath: url.path) else { return 0 }
        return try Data(contentsOf: url).reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
    }

    /// The entries after the first `afterLine` lines.
    static func entries(_ url: URL, afterLine skip: Int) throws -> [Entry] {
        let lines = try Data(contentsOf: url).split(separator: UInt8(ascii: "\n")).dropFirst(skip)
        let decoder = JSONDecoder()
        return try lines.map { try decoder.decode(Entry.self, from: Data($0)) }
    }

    /// Reads change nothing: gets, lists and operation polls.
    static func isRead(_ kind: String) -> Bool {
        kind.hasPrefix("get") || kind.hasPrefix("list") || kind == "pollOperation" || kind == "allLabs"
    }

    static func date(_ text: String) throws -> Date {
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        throw BenchError("unreadable timestamp \"\(text)\" in operations.jsonl")
    }

    /// The largest number of intervals open at one instant. An interval ending at the very instant
    /// another starts does not overlap it (the log has millisecond resolution, and the executor
    /// starts a job only after another one has returned).
    static func maximumOverlap(_ intervals: [(Date, Date)]) -> Int {
        let events = intervals.flatMap { [($0.0, 1), ($0.1, -1)] }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
        var open = 0, most = 0
        for (_, delta) in events {
            open += delta
            most = max(most, open)
        }
        return most
    }
}

// MARK: - Synthetic factories

/// A generated factory configuration (in memory) and, for the planner, a matching observed state.
struct SyntheticFactory {
    var labs: Int
    var templates: Int
    /// Templates per folder under GoldenImages/.
    var folderSize: Int
    var maxConcurrentJobs = 20
    /// How many subscriptions the labs are spread over (ARM throttles per subscription).
    var subscriptionCount = 20
    /// Every lab in this region (nil: spread over `regions`).
    var singleRegion: String? = nil
    /// Every lab subscribes to the whole GoldenImages tree (for the local-cloud benchmarks).
    var everyLabTakesEverything = false
    /// Per template: how long the local cloud takes to build it (`metadata.localCloud.buildSeconds`), when set.
    var buildSeconds: (@Sendable (Int) -> Double)? = nil

    static let factorySubscription = "00000000-0000-4000-8000-000000000000"
    static let regions = ["westeurope", "westeurope", "northeurope", "eastus"]

    var folders: Int { (templates + folderSize - 1) / folderSize }

    func folderPath(_ f: Int) -> String { "\(f % 3 == 2 ? "Linux" : "Windows")/Team \(String(format: "%03d", f))" }
    func templatePath(_ t: Int) -> String { "\(folderPath(t / folderSize))/Image \(String(format: "%04d", t)).json" }
    func isLinux(_ t: Int) -> Bool { (t / folderSize) % 3 == 2 }

    func subscription(_ lab: Int) -> String { String(format: "00000000-0000-4000-8000-%012x", 0xbe_0000 + lab % max(1, subscriptionCount)) }
    func labName(_ lab: Int) -> String { String(format: "Lab%04d", lab) }
    func resourceGroup(_ lab: Int) -> String { String(format: "rg-lab-%04d", lab) }

    /// The ImagePaths of a lab: four single templates, and for every tenth lab a whole folder too.
    func imagePaths(_ lab: Int) -> [String] {
        if everyLabTakesEverything { return (0..<folders).map(folderPath) }
        var paths = (0..<4).map { k in templatePath((lab &* 7 &+ k &* 131) % templates) }
        if lab % 10 == 0 { paths.append(folderPath((lab / 10) % folders)) }
        return paths
    }

    func templateJSON(_ t: Int) -> String {
        let linux = isLinux(t)
        let gallery = linux
            ? #""publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2", "osType": "Linux""#
            : #""publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter-azure-edition", "osType": "Windows""#
        let artifact = linux ? "linux-apt-package" : "windows-chocolatey"
        let metadata = buildSeconds.map { #""metadata": { "localCloud": { "buildSeconds": \#($0(t)) } },"# } ?? ""
        return """
            {
              "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
              "contentVersion": "1.0.0.0",
              \(metadata)
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
                    "notes": "Golden image \(t)",
                    "galleryImageReference": { \(gallery), "version": "latest" },
                    "size": "[parameters('size')]",
                    "userName": "[parameters('userName')]",
                    "password": "[parameters('password')]",
                    "artifacts": [
                      { "artifactId": "[resourceId('Microsoft.DevTestLab/labs/artifactSources/artifacts', parameters('labName'), 'public repo', '\(artifact)')]" }
                    ]
                  }
                }
              ]
            }

            """
    }

    var settingsJSON: String {
        """
        {
          "subscriptionId": "\(Self.factorySubscription)",
          "resourceGroup": "rg-imagefactory",
          "factoryLab": "ImageFactory",
          "location": "westeurope",
          "maxConcurrentJobs": \(maxConcurrentJobs),
          "imagesToSave": 2,
          "maxDeletions": 100000,
          "timeoutMinutes": 10
        }

        """
    }

    var labsJSON: String {
        let entries = (0..<labs).map { i in
            """
                {
                  "SubscriptionId": "\(subscription(i))",
                  "ResourceGroup": "\(resourceGroup(i))",
                  "LabName": "\(labName(i))",
                  "Location": "\(singleRegion ?? Self.regions[i % Self.regions.count])",
                  "ImagePaths": [\(imagePaths(i).map { "\"\($0)\"" }.joined(separator: ", "))]
                }
            """
        }
        return "{\n  \"Labs\": [\n" + entries.joined(separator: ",\n") + "\n  ]\n}\n"
    }

    /// The configuration, loaded and validated as the CLI does; errors are fatal for a benchmark.
    func configuration() throws -> FactoryConfiguration {
        var files = ["FactorySettings.json": settingsJSON, "Labs.json": labsJSON]
        for t in 0..<templates { files["GoldenImages/" + templatePath(t)] = templateJSON(t) }
        let configuration = ConfigurationLoader.load(try InMemoryConfigSource(commit: "be0c4000000000000000000000000000000be0c4", files: files).load())
        guard !configuration.diagnostics.hasErrors else {
            throw BenchError("the generated configuration has errors: " + configuration.diagnostics.errors.prefix(3).map(\.message).joined(separator: "; "))
        }
        return configuration
    }

    /// Creates the factory lab, its container and every target lab in a local cloud.
    func createLabs(in cloud: LocalCloud, _ configuration: FactoryConfiguration) async throws {
        let settings = configuration.settings
        let factory = try await cloud.createLab(LabID(subscriptionId: settings.subscriptionId, resourceGroup: settings.resourceGroup, name: settings.factoryLab),
                                                location: settings.location)
        try await cloud.createContainer(ContainerID(account: factory.storageAccount, name: settings.container))
        for lab in configuration.labs {
            _ = try await cloud.createLab(LabID(subscriptionId: lab.subscriptionId, resourceGroup: lab.resourceGroup ?? "rg", name: lab.labName),
                                          location: lab.location ?? settings.location)
        }
    }

    /// An observed state shaped like a factory that has run for a while: three records per template
    /// (the newest one out of date for every twentieth template), and `images` custom images spread
    /// evenly over the labs: the two newest of each template a lab takes (a few missing or failed),
    /// plus stale ones to retire (a third version, a template the lab dropped, a template deleted).
    func inventory(_ configuration: FactoryConfiguration, images: Int, now: Date) -> Inventory {
        let settings = configuration.settings
        let factoryID = LabID(subscriptionId: settings.subscriptionId, resourceGroup: settings.resourceGroup, name: settings.factoryLab)
        let factoryAccount = StorageAccountID(subscriptionId: factoryID.subscriptionId, resourceGroup: factoryID.resourceGroup, name: "afactory0000be0c4")
        let factory = Lab(id: factoryID, location: settings.location, storageAccount: factoryAccount)
        let container = ContainerID(account: factoryAccount, name: settings.container)
        let ages: [Double] = [1, 8, 15]  // days: newest, previous, older
        func name(_ template: GoldenImageTemplate, version: Int) -> String {
            "\(template.imageName)-\(Naming.dateSuffix(now.addingTimeInterval(-ages[version] * 86_400)))"
        }
        let byPath = Dictionary(uniqueKeysWithValues: configuration.templates.map { ($0.path, $0) })

        var records: [VhdRecord] = []
        var blobs: [BlobProperties] = []
        for (t, template) in configuration.templates.enumerated() {
            for version in 0..<3 {
                let imageName = name(template, version: version)
                let sha = version == 0 && t % 20 != 0 ? template.blobSha : String(repeating: "\(version)", count: 40)
                records.append(VhdRecord(imageName: imageName, imagePath: template.path, description: template.description, osType: template.osType,
                                         vhdFileName: imageName + ".vhd", timestamp: now.addingTimeInterval(-ages[version] * 86_400),
                                         osState: template.osState, commit: "0123456789abcdef", templateBlobSha: sha, sizeBytes: 127 << 30,
                                         md5: "bWQ1bWQ1bWQ1bWQ1bWQ1bQ==", runId: "earlier"))
                blobs.append(BlobProperties(id: BlobID(container: container, name: imageName + ".vhd"), contentLength: 127 << 30,
                                            contentMD5: "bWQ1bWQ1bWQ1bWQ1bWQ1bQ==", lastModified: now, copyStatus: .success))
                blobs.append(BlobProperties(id: BlobID(container: container, name: imageName + ".json"), contentLength: 600,
                                            contentMD5: nil, lastModified: now))
            }
        }
        blobs.append(BlobProperties(id: BlobID(container: container, name: "Interrupted-Capture-Nov-1-2026.vhd"), contentLength: 127 << 30,
                                    contentMD5: nil, lastModified: now, copyStatus: .success))
        let factoryVMs = [
            LabVirtualMachine(id: VirtualMachineID(lab: factoryID, name: "jumpbox01"), provisioningState: "Succeeded", powerState: "Running",
                              osType: .windows, tags: [FactoryTag.ignore: "true"], artifacts: [], createdAt: now, generalized: false),
            LabVirtualMachine(id: VirtualMachineID(lab: factoryID, name: "leftover01"), provisioningState: "Succeeded", powerState: "Deallocated",
                              osType: .windows, tags: [FactoryTag.imagePath: "Windows/Team 999/Gone.json"], artifacts: [], createdAt: now, generalized: true),
        ]
        let deployments = (0..<700).map { d in
            Deployment(subscriptionId: factoryID.subscriptionId, resourceGroup: factoryID.resourceGroup, name: "imagefactory-vm\(d)",
                       provisioningState: "Succeeded", timestamp: now.addingTimeInterval(-Double(d) * 3_600))
        }

        // Custom images in the labs: exactly `images` in all, spread evenly.
        var labInventories: [LabInventory] = []
        for (i, target) in configuration.labs.enumerated() {
            let labID = LabID(subscriptionId: target.subscriptionId, resourceGroup: target.resourceGroup ?? "rg", name: target.labName)
            let lab = Lab(id: labID, location: target.location ?? settings.location,
                          storageAccount: StorageAccountID(subscriptionId: labID.subscriptionId, resourceGroup: labID.resourceGroup,
                                                           name: String(format: "alab%04dbe0c4", i)))
            let share = images / max(1, labs) + (i < images % max(1, labs) ? 1 : 0)
            var candidates: [(String, String, Int, String)] = []  // (image name, image path, version, state)
            let taken = target.images.compactMap { byPath[$0] }
            let dropped = configuration.templates[(i &* 13 &+ 5) % configuration.templates.count]
            if i % 4 == 0 { candidates.append(("Retired_Old-Image-\(i % 50)-Oct-1-2026", "Retired/Old Image \(i % 50).json", 2, "Succeeded")) }
            if let first = taken.first { candidates.append((name(first, version: 2), first.path, 2, "Succeeded")) }
            if !target.images.contains(dropped.path) { candidates.append((name(dropped, version: 1), dropped.path, 1, "Succeeded")) }
            for (k, template) in taken.enumerated() {
                if !(i % 10 == 3 && k == 0) {  // a few labs lack their newest image: distribution work
                    candidates.append((name(template, version: 0), template.path, 0, i % 97 == 0 && k == 1 ? "Failed" : "Succeeded"))
                }
                candidates.append((name(template, version: 1), template.path, 1, "Succeeded"))
            }
            var extra = 0
            while candidates.count < share, !taken.isEmpty {  // pad with ever older versions
                let template = taken[extra % taken.count]
                candidates.append(("\(template.imageName)-Old\(extra)", template.path, 2, "Succeeded"))
                extra += 1
            }
            let labImages = candidates.prefix(share).enumerated().map { n, c in
                CustomImage(id: CustomImageID(lab: labID, name: c.0), provisioningState: ProvisioningState(c.3), osType: .windows, sysprep: true,
                            description: "Golden image", tags: [FactoryTag.imagePath: c.1, FactoryTag.commit: "0123456789abcdef", FactoryTag.runID: "earlier"],
                            createdAt: now.addingTimeInterval(-ages[c.2] * 86_400 - Double(n)), vhd: nil)
            }
            var labBlobs: [BlobProperties] = []
            if i % 50 == 7 {
                labBlobs.append(BlobProperties(id: BlobID(container: ContainerID(account: lab.storageAccount, name: settings.container), name: "Half-Made-Nov-1-2026.vhd"),
                                               contentLength: 127 << 30, contentMD5: nil, lastModified: now, copyStatus: .pending))
            }
            labInventories.append(LabInventory(key: target.key, lab: lab, problem: nil, images: Array(labImages), blobs: labBlobs))
        }
        return Inventory(factory: factory, factoryVMs: factoryVMs, factoryImages: [], records: records, factoryBlobs: blobs,
                         labs: labInventories, deployments: deployments, problems: [])
    }
}
