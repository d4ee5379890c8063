import AzureBackend
import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud
import LocalServe

/// The Azure backend's benchmarks, against `local serve` in this process (loopback http), with the
/// requests counted by the server as they arrive:
/// - `azure-nochange`: a no-change nightly run over N labs × M images: requests grow with labs, not
///   labs × images, and none writes; beside it, the original's count for the same run (a model:
///   it lists the subscription's labs, the lab's storage keys and its custom images per lab × image).
/// - `azure-throttle`: 400 distribution jobs at maxConcurrentJobs 20, every lab in one subscription,
///   against ARM's write bucket (200, refilled at 10 a second) and one ten times smaller (20, same
///   refill): accepted writes as a share of what the bucket allows, the 429s received, failed jobs.
enum AzureBenchmarks {
    static let usage = """
        usage: imagefactory-bench azure-nochange [--labs 50,100] [--templates 20]
               imagefactory-bench azure-throttle [--labs 20] [--templates 20] [--max-jobs 20] [--buckets 200,20] [--refill 10]
        """

    /// Counts what `local serve` answered, by kind.
    final class Counter: @unchecked Sendable {
        // @unchecked: every field is only touched under `lock`.
        private let lock = NSLock()
        private var requests: [(method: String, path: String, status: Int, at: ContinuousClock.Instant)] = []
        func record(_ r: ServedRequest) { lock.withLock { requests.append((r.method, r.path, r.status, ContinuousClock.now)) } }
        func reset() { lock.withLock { requests.removeAll() } }
        var all: [(method: String, path: String, status: Int, at: ContinuousClock.Instant)] { lock.withLock { requests } }
    }

    static func isARM(_ path: String) -> Bool { path.lowercased().hasPrefix("/subscriptions/") }
    static func isToken(_ path: String) -> Bool { path.contains("/oauth2/") }
    static func isWrite(_ method: String) -> Bool { !["GET", "HEAD"].contains(method) }

    /// A served local cloud and an Azure backend signed in to it.
    struct Served {
        let backend: AzureBackend
        let counter: Counter
        let server: Task<Void, Error>
    }

    static func serve(_ cloud: LocalCloud, directory: URL, throttle: ThrottleSettings, maxJobs: Int) async throws -> Served {
        let tenant = "00000000-0000-0000-0000-000000000001"
        let tokens = TokenAuthority(key: try TokenAuthority.signingKey(stateDirectory: directory), settings: .init())
        let service = LocalServeService(cloud: cloud, settings: LocalServeSettings(pageSize: 100, throttle: throttle, tenant: tenant), tokens: tokens)
        let counter = Counter()
        let ports = AsyncStream<Int>.makeStream()
        let server = Task {
            try await LocalServer(service: service, port: 0).run(onListening: { ports.continuation.yield($0) }, onRequest: { counter.record($0) })
        }
        var iterator = ports.stream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw BenchError("local serve did not start") }
        let base = "http://127.0.0.1:\(port)"
        let environment = ["AZURE_TENANT_ID": tenant, "AZURE_CLIENT_ID": "11111111-0000-4000-8000-0000000000be", "AZURE_CLIENT_SECRET": "bench",
                           "IMAGEFACTORY_ARM_ENDPOINT": base, "AZURE_AUTHORITY_HOST": base]
        let profile = try AzureCloudProfile.resolve(cloud: nil, armEndpoint: nil, environment: environment)
        let transport = try AsyncHTTPTransport.shared(caFile: nil)
        let credential = try CredentialFactory.make(mode: .clientSecret, profile: profile, environment: environment, transport: transport, clock: SystemClock())
        let http = AzureHTTPClient(profile: profile, transport: transport, credential: credential, clock: SystemClock(), maxConcurrentWrites: maxJobs)
        return Served(backend: AzureBackend(http: http), counter: counter, server: server)
    }

    // MARK: - azure-nochange

    static func noChange(arguments: [String]) async throws {
        let args = try BenchArguments(arguments, flags: ["--labs", "--templates", "--dir"], switches: ["--keep"], usage: usage)
        let labCounts = try (args.string("--labs") ?? "50,100").split(separator: ",").map { text -> Int in
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= 1 else { throw BenchError("--labs needs integers >= 1") }
            return n
        }
        let templateCount = try args.int("--templates", default: 20)
        let root = try PipelineBenchmarks.freshDirectory(args.string("--dir"), name: "azure-nochange")
        defer { if !args.has("--keep") { try? FileManager.default.removeItem(at: root) } }
        print("Azure backend against local serve (loopback http, instant latency, no throttling); \(templateCount) images, every lab takes every one")
        print("  labs  images  ARM reads  ARM writes  Blob reads  Blob writes  token  total  per lab   original (model)")
        var rows: [(labs: Int, total: Int, writes: Int)] = []
        for labCount in labCounts {
            let directory = root.appendingPathComponent("labs-\(labCount)")
            let settings = LocalCloudSettings(latency: .instant, throttle: .off, faults: .none)
            let factory = SyntheticFactory(labs: labCount, templates: templateCount, folderSize: templateCount, everyLabTakesEverything: true)
            let configuration = try factory.configuration()
            let cloud = try LocalCloud(stateDirectory: directory, settings: settings)
            try await factory.createLabs(in: cloud, configuration)
            // The first run, on the embedded cloud directly (fast): everything built and distributed.
            let firstRunner = FactoryRunner(backend: cloud, configuration: configuration)
            let first = try await firstRunner.execute(try await firstRunner.plan().0, runID: "bench-first", stages: Set(Stage.allCases),
                                                      requireSamePlanBasis: false, events: { _ in })
            guard first.succeeded else { throw BenchError("the first run with \(labCount) labs failed") }

            // The nightly run that finds nothing to do, through the Azure backend and REST.
            let served = try await serve(cloud, directory: directory, throttle: .off, maxJobs: 20)
            defer { served.server.cancel() }
            let runner = FactoryRunner(backend: served.backend, configuration: configuration)
            let (plan, _) = try await runner.plan()
            let second = try await runner.execute(plan, runID: "bench-second", stages: Set(Stage.allCases), requireSamePlanBasis: false, events: { _ in })
            guard plan.actions.isEmpty, second.results.isEmpty else {
                throw BenchError("the no-change run with \(labCount) labs planned \(plan.actions.count) actions: " + plan.actions.prefix(3).map(\.id).joined(separator: ", "))
            }
            let requests = served.counter.all
            let token = requests.filter { isToken($0.path) }.count
            let arm = requests.filter { isARM($0.path) }
            let blob = requests.filter { !isARM($0.path) && !isToken($0.path) }
            let armWrites = arm.filter { isWrite($0.method) }.count
            // Lease writes on the factory's lock blob are the run's own bookkeeping, not changes to the factory.
            let blobWrites = blob.filter { isWrite($0.method) && !$0.path.contains("comp=lease") }.count
            let leaseWrites = blob.filter { $0.path.contains("comp=lease") }.count
            let total = requests.count
            // The original: per lab × image, the subscription's labs, the lab's storage keys and its custom images.
            let original = labCount * templateCount * 3
            rows.append((labCount, total, armWrites + blobWrites))
            print(String(format: "%6d  %6d  %9d  %10d  %10d  %11d  %5d  %5d  %7.2f   %d", labCount, labCount * templateCount, arm.count - armWrites, armWrites,
                         blob.count - blob.filter { isWrite($0.method) }.count, blobWrites, token, total, Double(total) / Double(labCount), original))
            if leaseWrites > 0 { print("        (+ \(leaseWrites) lease requests on the factory's lock blob: acquire, renew, release)") }
        }
        let (low, high) = (rows.min { $0.labs < $1.labs }!, rows.max { $0.labs < $1.labs }!)
        let slope = Double(high.total - low.total) / Double(max(1, high.labs - low.labs))
        let constant = Double(low.total) - slope * Double(low.labs)
        print(String(format: "requests:    %.2f per lab + %.1f (labs × images would be at least %d per lab)", slope, constant, templateCount))
        let noWrites = rows.allSatisfy { $0.writes == 0 }
        let perLab = slope < Double(templateCount)
        print("verdict:     \(noWrites ? "no writes" : "WRITES in a no-change run"), requests \(perLab ? "grow per lab, not per lab × image" : "grow TOO FAST") — target \(noWrites && perLab ? "met" : "MISSED")")
        let json = "{\"benchmark\":\"azure-nochange\",\"templates\":\(templateCount),\"rows\":[" + rows.map { "{\"labs\":\($0.labs),\"requests\":\($0.total),\"writes\":\($0.writes),\"original\":\($0.labs * templateCount * 3)}" }.joined(separator: ",")
            + "],\"requestsPerLab\":\(String(format: "%.2f", slope)),\"constant\":\(String(format: "%.1f", constant)),\"met\":\(noWrites && perLab)}"
        print(json)
        if !(noWrites && perLab) { exit(1) }
    }

    // MARK: - azure-throttle

    static func throttle(arguments: [String]) async throws {
        let args = try BenchArguments(arguments, flags: ["--labs", "--templates", "--max-jobs", "--buckets", "--refill", "--dir"], switches: ["--keep"], usage: usage)
        let labCount = try args.int("--labs", default: 20)
        let templateCount = try args.int("--templates", default: 20)
        let maxJobs = try args.int("--max-jobs", default: 20)
        let refill = try args.double("--refill", default: 10)
        let buckets = try (args.string("--buckets") ?? "200,20").split(separator: ",").map { text -> Double in
            guard let n = Double(text.trimmingCharacters(in: .whitespaces)), n >= 1 else { throw BenchError("--buckets needs numbers >= 1") }
            return n
        }
        let root = try PipelineBenchmarks.freshDirectory(args.string("--dir"), name: "azure-throttle")
        defer { if !args.has("--keep") { try? FileManager.default.removeItem(at: root) } }
        print("\(labCount * templateCount) distribution jobs (\(labCount) labs × \(templateCount) images, one subscription) at maxConcurrentJobs \(maxJobs), Azure backend against local serve")
        var results: [String] = []
        var met = true
        for capacity in buckets {
            let directory = root.appendingPathComponent("bucket-\(Int(capacity))")
            let settings = LocalCloudSettings(latency: .instant, throttle: .off, faults: .none)
            let factory = SyntheticFactory(labs: labCount, templates: templateCount, folderSize: templateCount, maxConcurrentJobs: maxJobs,
                                           subscriptionCount: 1, everyLabTakesEverything: true)
            let configuration = try factory.configuration()
            let cloud = try LocalCloud(stateDirectory: directory, settings: settings)
            try await factory.createLabs(in: cloud, configuration)
            let local = FactoryRunner(backend: cloud, configuration: configuration)
            let captured = try await local.execute(try await local.plan().0, runID: "bench-capture", stages: [.build, .snap], requireSamePlanBasis: false, events: { _ in })
            guard captured.succeeded else { throw BenchError("capturing the images failed") }

            let served = try await serve(cloud, directory: directory, throttle: ThrottleSettings(capacity: capacity, refillPerSecond: refill, enabled: true), maxJobs: maxJobs)
            defer { served.server.cancel() }
            let runner = FactoryRunner(backend: served.backend, configuration: configuration)
            let (plan, _) = try await runner.plan()
            let jobs = plan.actions(in: .distribute).count
            let times = StageTimes()
            let summary = try await runner.execute(plan, runID: "bench-throttle", stages: [.distribute], requireSamePlanBasis: false) { event in
                switch event {
                case .stageStarted(.distribute, _): times.mark(start: true)
                case .stageFinished(.distribute, _, _, _): times.mark(start: false)
                default: break
                }
            }
            let (start, end) = times.value
            guard let start, let end else { throw BenchError("the distribute stage reported no start or finish") }
            let wall = PipelineBenchmarks.durationSeconds(end - start)
            let writes = served.counter.all.filter { isARM($0.path) && isWrite($0.method) && $0.at >= start && $0.at <= end }
            let accepted = writes.filter { $0.status != 429 }.count
            let throttled = writes.count - accepted
            // What the bucket allows over the stage: its fill at the start plus the refill.
            let allowed = capacity + refill * wall
            let share = Double(accepted) / allowed * 100
            let bound = max(0, Double(accepted) - capacity) / refill
            let failed = summary.failed.count
            let stats = await served.backend.http.statistics()
            let limiter = await served.backend.http.limiter.snapshot(configuration.labs[0].subscriptionId)
            print(String(format: "bucket %4.0f/%.0f s: %d jobs in %.2f s; %d ARM writes accepted (bound %.2f s after the first %.0f), %d answered 429; %.1f%% of what the bucket allows; %d failed; client retried %d; write window lowest %d",
                         capacity, refill, jobs, wall, accepted, bound, capacity, throttled, share, failed, stats.retries, limiter.lowestWindow))
            let ok = failed == 0 && summary.results.count == jobs && share >= 90
            met = met && ok
            results.append("{\"bucket\":\(Int(capacity)),\"refillPerSecond\":\(refill),\"jobs\":\(jobs),\"seconds\":\(String(format: "%.2f", wall)),\"acceptedWrites\":\(accepted),\"throttled\":\(throttled),\"shareOfBucketPercent\":\(String(format: "%.1f", share)),\"failedJobs\":\(failed)}")
        }
        print("verdict:     throughput \(met ? "≥ 90% of the bucket with no failed job" : "BELOW 90% or jobs failed") — target \(met ? "met" : "MISSED")")
        print("{\"benchmark\":\"azure-throttle\",\"runs\":[\(results.joined(separator: ","))],\"met\":\(met)}")
        if !met { exit(1) }
    }
}
