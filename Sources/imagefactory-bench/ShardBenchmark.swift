import Foundation

/// `shards`: the factory split across N cooperating processes, as CI jobs run it. One build job
/// (`run --factory-only`, the embedded local cloud) captures every image once; then, for
/// each shard count N, a copy of that state is served by `imagefactory local serve` with Azure's
/// per-subscription ARM write buckets, and N processes of `imagefactory run --backend azure
/// --shard I/N` distribute at once. The figure is the wall time from the first shard's start to
/// the last one's end, and the speed-up against one process.
///
/// It runs the real binary (real processes against one server: the shards share nothing but the
/// cloud), so the machine's cores bound it too: on a small machine the emulated latency has to
/// dominate the CPU each request costs, which the defaults arrange.
enum ShardBenchmark {
    static let usage = """
        usage: imagefactory-bench shards [--labs 2000] [--subscriptions 20] [--templates 10] [--shards 1,2,4,8]
                                         [--max-jobs 20] [--latency fast] [--throttle 200/10] [--binary PATH] [--dir PATH] [--keep]
          --labs, --subscriptions  target labs, spread evenly over that many subscriptions; every lab takes every image
          --latency                the served cloud's latency profile (instant, fast, realistic)
          --throttle               each subscription's ARM write bucket, CAPACITY/REFILL_PER_SECOND (Azure: 200/10)
          --binary                 the imagefactory binary (default: beside this one)
        """

    struct Row: Codable {
        var shards: Int
        var makespanSeconds: Double
        var speedup: Double
        var efficiency: Double
        var failedShards: Int
        var images: Int
    }

    static func run(arguments: [String]) async throws {
        let args = try BenchArguments(arguments, flags: ["--labs", "--subscriptions", "--templates", "--shards", "--max-jobs", "--latency",
                                                          "--throttle", "--binary", "--dir"], switches: ["--keep"], usage: usage)
        let labs = try args.int("--labs", default: 2000)
        let subscriptions = try args.int("--subscriptions", default: 20)
        let templates = try args.int("--templates", default: 10)
        let maxJobs = try args.int("--max-jobs", default: 20)
        let latency = args.string("--latency") ?? "fast"
        let throttle = args.string("--throttle") ?? "200/10"
        let shardCounts = try (args.string("--shards") ?? "1,2,4,8").split(separator: ",").map { text -> Int in
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= 1 else { throw BenchError("--shards needs integers >= 1") }
            return n
        }
        let binary = URL(fileURLWithPath: args.string("--binary")
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("imagefactory").path)
        guard FileManager.default.isExecutableFile(atPath: binary.path) else { throw BenchError("no imagefactory binary at \(binary.path); pass --binary") }
        let root = try PipelineBenchmarks.freshDirectory(args.string("--dir"), name: "shards")
        defer { if !args.has("--keep") { try? FileManager.default.removeItem(at: root) } }
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)

        // The factory: every lab takes every image, one region (so copies fan out inside it).
        let factory = SyntheticFactory(labs: labs, templates: templates, folderSize: templates, maxConcurrentJobs: maxJobs,
                                       subscriptionCount: subscriptions, singleRegion: "westeurope", everyLabTakesEverything: true)
        let repo = root.appendingPathComponent("repo")
        try writeRepository(factory, to: repo)
        let jobs = labs * templates
        print("\(labs) labs in \(subscriptions) subscriptions, \(templates) images each (\(jobs) distributions), maxConcurrentJobs \(maxJobs) per process")
        print("served cloud: latency \(latency), ARM write bucket \(throttle) per subscription; shards as separate processes on \(ProcessInfo.processInfo.activeProcessorCount) cores")

        // The build job, once: every image captured in the factory.
        let base = root.appendingPathComponent("state-built")
        let build = try runProcess(binary, ["run", "--repo", repo.path, "--factory-only"],
                                   environment: ["IMAGEFACTORY_STATE_DIR": base.path, "IMAGEFACTORY_LOCAL_LATENCY": "instant",
                                                 "IMAGEFACTORY_LOCAL_THROTTLE": "off"], log: root.appendingPathComponent("build.log"))
        guard build.status == 0 else { throw BenchError("the build job failed (\(build.status)); see \(root.path)/build.log") }
        print(String(format: "build job: %.1f s", build.seconds))

        var rows: [Row] = []
        for n in shardCounts {
            let state = root.appendingPathComponent("state-\(n)")
            try copyTree(base, to: state)
            let serve = try Served.start(binary, state: state, latency: latency, throttle: throttle, log: root.appendingPathComponent("serve-\(n).log"))
            defer { serve.stop() }
            // Every shard is started before any is waited for: real processes at once (waiting in
            // tasks would block the cooperative pool, which has one thread per core).
            let started = ContinuousClock.now
            let processes = try (1...n).map { i in
                try startProcess(binary, ["run", "--repo", repo.path, "--shard", "\(i)/\(n)"],
                                 environment: serve.environment, log: root.appendingPathComponent("shard-\(n)-\(i).log"))
            }
            var results: [(Int, Int32)] = []
            for (i, process) in processes.enumerated() {
                process.waitUntilExit()
                results.append((i + 1, process.terminationStatus))
            }
            let seconds = PipelineBenchmarks.seconds(since: started)
            serve.stop()
            let images = try countImages(binary, state: state)
            let failed = results.filter { $0.1 != 0 }.count
            let one = rows.first { $0.shards == 1 }?.makespanSeconds ?? (n == 1 ? seconds : Double.nan)
            let speedup = one / seconds
            rows.append(Row(shards: n, makespanSeconds: (seconds * 100).rounded() / 100, speedup: (speedup * 100).rounded() / 100,
                            efficiency: ((speedup / Double(n)) * 1000).rounded() / 1000, failedShards: failed, images: images))
            print(String(format: "  %d shard(s): %.2f s, speed-up %.2f (%.0f%% of linear), %d failed, %d custom images in labs",
                         n, seconds, speedup, speedup / Double(n) * 100, failed, images))
            if failed > 0 { print("    failed shards: \(results.filter { $0.1 != 0 }.map { "\($0.0) (exit \($0.1))" }.joined(separator: ", ")); logs in \(root.path)") }
        }
        let worst = rows.filter { $0.shards > 1 }.map(\.efficiency).min()
        let verdict = rows.allSatisfy { $0.failedShards == 0 && $0.images == jobs } && (worst ?? 1) >= 0.85
        print("goal: every shard succeeds, every lab gets every image, and each speed-up within 15% of linear: \(verdict ? "met" : "NOT met")")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        struct Summary: Codable {
            var benchmark = "shards"
            var labs: Int, subscriptions: Int, templates: Int, distributions: Int, maxConcurrentJobs: Int, latency: String, throttle: String, cores: Int
            var makespanSeconds: [String: Double]
            var speedup: [String: Double]
            var efficiency: [String: Double]
            var failedShards: Int
            var goalMet: Bool
        }
        let summary = Summary(labs: labs, subscriptions: subscriptions, templates: templates, distributions: jobs, maxConcurrentJobs: maxJobs,
                              latency: latency, throttle: throttle, cores: ProcessInfo.processInfo.activeProcessorCount,
                              makespanSeconds: Dictionary(uniqueKeysWithValues: rows.map { (String($0.shards), $0.makespanSeconds) }),
                              speedup: Dictionary(uniqueKeysWithValues: rows.map { (String($0.shards), $0.speedup) }),
                              efficiency: Dictionary(uniqueKeysWithValues: rows.map { (String($0.shards), $0.efficiency) }),
                              failedShards: rows.map(\.failedShards).reduce(0, +), goalMet: verdict)
        print(String(decoding: try encoder.encode(summary), as: UTF8.self))
    }

    // MARK: Pieces

    static func writeRepository(_ factory: SyntheticFactory, to repo: URL) throws {
        let configuration = repo.appendingPathComponent("Configuration")
        var files = ["FactorySettings.json": factory.settingsJSON, "Labs.json": factory.labsJSON]
        for t in 0..<factory.templates { files["GoldenImages/" + factory.templatePath(t)] = factory.templateJSON(t) }
        for (path, text) in files {
            let url = configuration.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        for arguments in [["init", "-q", "-b", "main"], ["add", "-A"],
                          ["-c", "user.name=ImageFactory Bench", "-c", "user.email=bench@example.invalid", "-c", "commit.gpgsign=false",
                           "commit", "-q", "--no-verify", "-m", "Generated factory configuration"]] {
            let result = try runProcess(URL(fileURLWithPath: "/usr/bin/git"), arguments, environment: [:], log: nil, directory: repo)
            guard result.status == 0 else { throw BenchError("git \(arguments.joined(separator: " ")) failed") }
        }
    }

    /// Copies a state directory keeping its VHDs sparse.
    static func copyTree(_ source: URL, to destination: URL) throws {
        let result = try runProcess(URL(fileURLWithPath: "/bin/cp"), ["-a", "--sparse=always", source.path, destination.path], environment: [:], log: nil)
        guard result.status == 0 else { throw BenchError("cp \(source.path) failed") }
    }

    /// Custom images in every lab but the factory, read from the state with `local show --json`.
    static func countImages(_ binary: URL, state: URL) throws -> Int {
        let out = state.appendingPathComponent("show.json")
        let result = try runProcess(binary, ["local", "show", "--json"], environment: ["IMAGEFACTORY_STATE_DIR": state.path], log: out)
        guard result.status == 0, let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as? [String: Any],
              let labs = json["labs"] as? [[String: Any]] else { throw BenchError("local show --json failed on \(state.path)") }
        return labs.filter { ($0["name"] as? String) != "ImageFactory" }.map { ($0["customImages"] as? [Any])?.count ?? 0 }.reduce(0, +)
    }

    /// `imagefactory local serve` on a free port, plain http on loopback, with its sign-in environment.
    struct Served: Sendable {
        let process: Process
        let environment: [String: String]

        static func start(_ binary: URL, state: URL, latency: String, throttle: String, log: URL) throws -> Served {
            let out = log.deletingPathExtension().appendingPathExtension("out")
            _ = FileManager.default.createFile(atPath: out.path, contents: nil)
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let process = Process()
            process.executableURL = binary
            process.arguments = ["local", "serve", "--state-dir", state.path, "--port", "0", "--quiet"]
            process.environment = ["IMAGEFACTORY_LOCAL_LATENCY": latency, "IMAGEFACTORY_LOCAL_THROTTLE": throttle, "PATH": "/usr/bin:/bin"]
            process.standardOutput = try FileHandle(forWritingTo: out)
            process.standardError = try FileHandle(forWritingTo: log)
            process.standardInput = FileHandle.nullDevice
            try process.run()
            for _ in 0..<600 {
                let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
                if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Listening on ") }) {
                    let base = String(line.dropFirst("Listening on ".count).split(separator: " ")[0])
                    return Served(process: process, environment: [
                        "IMAGEFACTORY_BACKEND": "azure", "IMAGEFACTORY_ARM_ENDPOINT": base, "AZURE_AUTHORITY_HOST": base,
                        "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001", "AZURE_CLIENT_ID": "11111111-0000-4000-8000-0000000000be",
                        "AZURE_CLIENT_SECRET": "bench", "IMAGEFACTORY_IMDS_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"])
                }
                guard process.isRunning else { break }
                usleep(50_000)
            }
            process.terminate()
            throw BenchError("local serve did not start; see \(log.path)")
        }

        func stop() {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
        }
    }

    /// Runs a process to its end; its output goes to `log` (or nowhere).
    static func runProcess(_ executable: URL, _ arguments: [String], environment: [String: String], log: URL?,
                           directory: URL? = nil) throws -> (status: Int32, seconds: Double) {
        let started = ContinuousClock.now
        let process = try startProcess(executable, arguments, environment: environment, log: log, directory: directory)
        process.waitUntilExit()
        return (process.terminationStatus, PipelineBenchmarks.seconds(since: started))
    }

    /// Starts a process and returns at once; its output goes to `log` (or nowhere).
    static func startProcess(_ executable: URL, _ arguments: [String], environment: [String: String], log: URL?,
                             directory: URL? = nil) throws -> Process {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var env = ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()]
        for (key, value) in environment { env[key] = value }
        process.environment = env
        if let directory { process.currentDirectoryURL = directory }
        if let log {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
        } else {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        }
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }
}
