import Foundation
import Testing

/// A factory run as N cooperating jobs, as a CI engine runs it: one build job (`run --factory-only`),
/// then N shard processes at once (`run --shard I/N`) on one local cloud, or on one `local serve`
/// through the Azure backend. Together they must leave exactly what one run leaves.
@Suite(.serialized)
struct ShardRunTests {
    /// Quick emulated time; leases long enough that a loaded machine renews them in time.
    static let env = ["IMAGEFACTORY_LOCAL_LATENCY": "instant", "IMAGEFACTORY_LOCK_SECONDS": "10"]
    /// Whatever CI runs these tests, `--shard auto` must not find its variables.
    static let noCI = ["SYSTEM_JOBPOSITIONINPHASE": "", "SYSTEM_TOTALJOBSINPHASE": "", "JOB_COMPLETION_INDEX": ""]

    /// The sample's templates; eight labs in four subscriptions (the first with four labs, in two
    /// regions) and a gallery: 24 jobs, so with four shards the first subscription alone is over a
    /// fair share and is split, and with two it is not.
    static func commitShardedFactory(_ repo: FixtureRepository) throws {
        try repo.commitSampleConfiguration()
        func lab(_ name: String, _ sub: String, _ group: String, _ location: String, _ paths: [String]) -> [String: Any] {
            ["SubscriptionId": sub, "ResourceGroup": group, "LabName": name, "Location": location, "ImagePaths": paths]
        }
        let dev = "11111111-1111-4111-8111-111111111111", training = "22222222-2222-4222-8222-222222222222"
        let root: [String: Any] = [
            "Labs": [
                lab("DeveloperLab", dev, "rg-dev-labs-weu", "westeurope", ["Windows/Developer", "Linux/Ubuntu 22.04 LTS.json", "Windows/Server 2022"]),
                lab("DevLab2", dev, "rg-dev-labs-weu", "westeurope", ["Linux"]),
                lab("DevLab3", dev, "rg-dev-3", "westeurope", ["Windows/Server 2022"]),
                lab("DevLab4", dev, "rg-dev-4", "northeurope", ["Linux/Ubuntu 22.04 LTS.json", "Windows/Server 2019/Datacenter.json"]),
                lab("TrainingLab", training, "rg-training-neu", "northeurope", ["Windows\\Server 2019", "Linux"]),
                lab("TrainingLab2", training, "rg-training-2", "northeurope", ["Windows/Developer"]),
                lab("QALab", "33333333-3333-4333-8333-333333333333", "rg-qa-eus", "eastus",
                    ["Windows/Server 2019/Datacenter.json", "Windows/Server 2022/Datacenter.json", "Linux/Ubuntu 22.04 LTS.json"]),
                lab("DataScienceLab", "44444444-4444-4444-8444-444444444444", "rg-datascience-weu", "westeurope",
                    ["Linux/Data Science", "Windows/Developer/SQL Server 2019 Developer.json"]),
            ],
            "Galleries": [[
                "SubscriptionId": "00000000-0000-4000-8000-000000000000", "ResourceGroup": "rg-images", "GalleryName": "Contoso.Images",
                "Location": "westeurope", "ImagePaths": ["Windows/Server 2022", "Linux/Ubuntu 22.04 LTS.json"],
                "TargetRegions": [["Name": "westeurope"], ["Name": "northeurope"]],
            ] as [String: Any]],
        ]
        let text = String(decoding: try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
        try repo.commit(["Configuration/Labs.json": text], message: "Eight labs in four subscriptions and a gallery")
    }

    static let allTargets: Set<String> = ["DeveloperLab", "DevLab2", "DevLab3", "DevLab4", "TrainingLab", "TrainingLab2", "QALab", "DataScienceLab",
                                          "gallery Contoso.Images"]

    /// What a factory leaves, comparable across state directories: each lab's images (name and
    /// source path) and VMs, each gallery definition's factory versions by source path.
    struct Outcome: Decodable {
        struct Item: Decodable { var name: String; var tags: [String: String] }
        struct Blob: Decodable { var name: String }
        struct Container: Decodable { var name: String; var blobs: [Blob] }
        struct Lab: Decodable { var name: String; var storageAccount: String; var vms: [Item]; var customImages: [Item]; var containers: [Container] }
        struct Replica: Decodable { var region: String; var state: String }
        struct Version: Decodable { var name: String; var tags: [String: String]; var replication: [Replica] }
        struct Definition: Decodable { var name: String; var versions: [Version] }
        struct Gallery: Decodable { var name: String; var definitions: [Definition] }
        var labs: [Lab]
        var galleries: [Gallery]

        var summary: [String: [String]] {
            var result: [String: [String]] = [:]
            for lab in labs {
                result[lab.name] = (lab.customImages.map { "image \($0.name) from \($0.tags["ImagePath"] ?? "?")" } + lab.vms.map { "vm \($0.name)" }).sorted()
            }
            for gallery in galleries {
                for definition in gallery.definitions {
                    // Version numbers come from capture times, which differ between state directories: compare what they hold.
                    result["gallery \(gallery.name)/\(definition.name)"] = definition.versions.filter { $0.tags["ImagePath"] != nil }
                        .map { "version from \($0.tags["ImagePath"]!) in \($0.replication.filter { $0.state == "Completed" }.map(\.region).sorted())" }.sorted()
                }
            }
            return result
        }

        /// Nothing left over: no VM, one VHD and one record per template in the factory, no temporary copy in a lab.
        func expectNothingLeft(templates: Int, sourceLocation: SourceLocation = #_sourceLocation) {
            for lab in labs {
                let blobs = lab.containers.flatMap(\.blobs).map(\.name)
                if lab.name == "ImageFactory" {
                    let images = blobs.filter { !$0.hasPrefix("imagefactory.") }
                    #expect(images.filter { $0.hasSuffix(".vhd") }.count == templates, "\(images)", sourceLocation: sourceLocation)
                    #expect(images.filter { $0.hasSuffix(".json") }.count == templates, "\(images)", sourceLocation: sourceLocation)
                    #expect(lab.vms.isEmpty, "factory VMs left: \(lab.vms.map(\.name))", sourceLocation: sourceLocation)
                } else {
                    #expect(blobs.isEmpty, "\(lab.name) keeps temporary blobs: \(blobs)", sourceLocation: sourceLocation)
                    let paths = lab.customImages.compactMap { $0.tags["ImagePath"] }
                    #expect(Set(paths).count == paths.count, "duplicate images in \(lab.name)", sourceLocation: sourceLocation)
                }
            }
        }
    }

    static func outcome(_ arguments: [String]) throws -> Outcome {
        let result = try ImageFactory.run(["local", "show", "--json"] + arguments, environment: env)
        #expect(result.status == 0, "\(result)")
        return try JSONDecoder().decode(Outcome.self, from: Data(result.stdout.utf8))
    }

    /// A process of the binary started now and waited for later, its output in files (standard
    /// error in a pipe when the test waits for a line of it).
    final class Started {
        let process = Process()
        let out: URL
        let err: URL
        private let scratch: URL
        private let errors: Pipe?
        private var seen = ""

        init(_ arguments: [String], environment extra: [String: String], watchErrors: Bool = false) throws {
            errors = watchErrors ? Pipe() : nil
            scratch = FileManager.default.temporaryDirectory.appendingPathComponent("imagefactory-shard-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            out = scratch.appendingPathComponent("stdout")
            err = scratch.appendingPathComponent("stderr")
            _ = FileManager.default.createFile(atPath: out.path, contents: nil)
            _ = FileManager.default.createFile(atPath: err.path, contents: nil)
            process.executableURL = try ImageFactory.binary()
            process.arguments = arguments
            process.currentDirectoryURL = FileManager.default.temporaryDirectory
            var environment = ProcessInfo.processInfo.environment.filter { key, _ in
                !key.hasPrefix("IMAGEFACTORY_") && !key.hasPrefix("GIT_") && key != "TF_BUILD" && key != "GITHUB_ACTIONS"
            }
            environment["GIT_CONFIG_NOSYSTEM"] = "1"
            environment["GIT_CONFIG_GLOBAL"] = "/dev/null"
            environment["LC_ALL"] = "C"
            for (key, value) in ShardRunTests.noCI.merging(extra, uniquingKeysWith: { $1 }) { environment[key] = value }
            process.environment = environment
            process.standardOutput = try FileHandle(forWritingTo: out)
            if let errors { process.standardError = errors } else { process.standardError = try FileHandle(forWritingTo: err) }
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        var pid: Int32 { process.processIdentifier }

        /// Waits for the process and returns what it printed.
        func finish() -> CommandResult {
            process.waitUntilExit()
            defer { try? FileManager.default.removeItem(at: scratch) }
            if let errors { seen += String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
            return CommandResult(status: process.terminationStatus, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                                 stderr: errors == nil ? (try? String(contentsOf: err, encoding: .utf8)) ?? "" : seen)
        }

        /// Returns once the process says `text` on standard error (false if it ended first): reads
        /// block until the process writes or exits, so no waiting on time.
        func waitFor(_ text: String) -> Bool {
            guard let errors else { return false }
            while !seen.contains(text) {
                let data = errors.fileHandleForReading.availableData
                if data.isEmpty { return false }
                seen += String(decoding: data, as: UTF8.self)
            }
            return true
        }
    }

    struct Report: Decodable {
        struct Shard: Decodable { var index: Int; var count: Int; var subscriptions: [String]; var targets: [String] }
        struct Action: Decodable { var id: String; var stage: String; var target: String?; var result: String }
        var result: String
        var shard: Shard?
        var actions: [Action]
    }

    /// The build job, then N shard processes at once; checks every shard's report, and returns the shards' targets.
    @discardableResult
    static func runSharded(_ repo: FixtureRepository, count: Int, state: [String], environment: [String: String],
                           sourceLocation: SourceLocation = #_sourceLocation) throws -> [Int: Set<String>] {
        let build = try ImageFactory.run(["run", "--factory-only", "--repo", repo.path] + state, environment: environment)
        #expect(build.status == 0, "N=\(count) build job: \(build)", sourceLocation: sourceLocation)
        #expect(build.stdout.contains("the factory's own work only"), "\(build.stdout)", sourceLocation: sourceLocation)
        let shards = try (1...count).map { index in
            try Started(["run", "--shard", "\(index)/\(count)", "--repo", repo.path, "--report-json", repo.url("out/\(count)-\(index).json").path] + state,
                        environment: environment)
        }
        var owned: [Int: Set<String>] = [:]
        for (offset, shard) in shards.enumerated() {
            let result = shard.finish()
            #expect(result.status == 0, "N=\(count) shard \(offset + 1): \(result)", sourceLocation: sourceLocation)
            #expect(result.stdout.contains("(shard \(offset + 1)/\(count)"), "the console names the shard: \(result.stdout)", sourceLocation: sourceLocation)
            let report = try JSONDecoder.iso8601.decode(Report.self, from: Data(contentsOf: repo.url("out/\(count)-\(offset + 1).json")))
            let block = try #require(report.shard, "every report of a shard has its shard block", sourceLocation: sourceLocation)
            #expect(block.index == offset + 1 && block.count == count, sourceLocation: sourceLocation)
            #expect(block.subscriptions.allSatisfy { $0 == $0.lowercased() }, sourceLocation: sourceLocation)
            #expect(report.actions.allSatisfy { $0.target.map(block.targets.contains) == true }, "N=\(count) shard \(offset + 1) acted outside its targets: \(report.actions.compactMap(\.target))",
                    sourceLocation: sourceLocation)
            #expect(report.actions.allSatisfy { $0.stage != "build" && $0.stage != "snap" }, sourceLocation: sourceLocation)
            owned[offset + 1] = Set(block.targets)
        }
        let all = owned.values.flatMap { $0 }
        #expect(all.count == Set(all).count, "N=\(count): a target in two shards", sourceLocation: sourceLocation)
        #expect(Set(all) == allTargets, "N=\(count): \(Set(all).symmetricDifference(allTargets))", sourceLocation: sourceLocation)
        return owned
    }

    /// Every shard again, at once, and a whole run: nothing left to do.
    static func expectNothingToDo(_ repo: FixtureRepository, count: Int, state: [String], environment: [String: String],
                                  sourceLocation: SourceLocation = #_sourceLocation) throws {
        let again = try (1...count).map { try Started(["run", "--shard", "\($0)/\(count)", "--repo", repo.path] + state, environment: environment) }
        for (offset, shard) in again.enumerated() {
            let result = shard.finish()
            #expect(result.status == 0 && result.stdout.contains(": 0 actions"), "N=\(count) shard \(offset + 1) again: \(result)", sourceLocation: sourceLocation)
        }
        let whole = try ImageFactory.run(["run", "--repo", repo.path] + state, environment: environment)
        #expect(whole.status == 0 && whole.stdout.contains(": 0 actions"), "a whole run after the shards: \(whole)", sourceLocation: sourceLocation)
    }

    @Test("the build job and N = 1, 2 and 4 shard processes at once on one local cloud leave exactly what one run leaves; nothing is left to do")
    func shardsOnTheLocalCloud() throws {
        try FixtureRepository.with { repo in
            try Self.commitShardedFactory(repo)
            let whole = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env)
            #expect(whole.status == 0 && whole.stdout.contains("0 failed"), "\(whole)")
            let reference = try Self.outcome(["--repo", repo.path])
            #expect(reference.summary.values.reduce(0) { $0 + $1.count } == 20 + 2, "not vacuous: the reference run made the images and versions")
            reference.expectNothingLeft(templates: 7)
            for count in [1, 2, 4] {
                let state = ["--state-dir", repo.url(".state-\(count)").path]
                #expect(try ImageFactory.run(["local", "init", "--repo", repo.path] + state, environment: Self.env).status == 0)
                try Self.runSharded(repo, count: count, state: state, environment: Self.env)
                let sharded = try Self.outcome(state)
                #expect(sharded.summary == reference.summary, "N=\(count)")
                sharded.expectNothingLeft(templates: 7)
                try Self.expectNothingToDo(repo, count: count, state: state, environment: Self.env)
            }
        }
    }

    @Test("the same through the Azure backend: N = 1, 2 and 4 shard processes against one local serve")
    func shardsThroughTheAzureBackend() throws {
        try FixtureRepository.with { repo in
            try Self.commitShardedFactory(repo)
            let whole = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env)
            #expect(whole.status == 0, "\(whole)")
            let reference = try Self.outcome(["--repo", repo.path])
            for count in [1, 2, 4] {
                let state = repo.url(".served-\(count)")
                #expect(try ImageFactory.run(["local", "init", "--repo", repo.path, "--state-dir", state.path], environment: Self.env).status == 0)
                let served = try ServedCloud(stateDirectory: state, arguments: ["--quiet"])
                defer { served.stop() }
                try Self.runSharded(repo, count: count, state: [], environment: served.azureEnvironment)
                let sharded = try Self.outcome(["--state-dir", state.path])
                #expect(sharded.summary == reference.summary, "N=\(count)")
                sharded.expectNothingLeft(templates: 7)
                try Self.expectNothingToDo(repo, count: count, state: [], environment: served.azureEnvironment)
            }
            // A whole run with work to do (a factory VM left over) takes the factory's lock after the shards:
            // it finds their lease blobs free over Blob REST and removes them.
            let state = repo.url(".served-4")
            let lockBlobs = { (outcome: Outcome) in outcome.labs.flatMap { $0.containers.flatMap(\.blobs) }.map(\.name).filter { $0.hasPrefix("imagefactory.locks/") } }
            #expect(!lockBlobs(try Self.outcome(["--state-dir", state.path])).isEmpty, "not vacuous: the shards left their lease blobs")
            #expect(try ImageFactory.run(["local", "add-vm", "--repo", repo.path, "--state-dir", state.path, "--lab", "ImageFactory", "--name", "leftover",
                                          "--tag", "ImagePath=Linux/Ubuntu 22.04 LTS.json"], environment: Self.env).status == 0)
            let served = try ServedCloud(stateDirectory: state, arguments: ["--quiet"])
            defer { served.stop() }
            let after = try ImageFactory.run(["run", "--repo", repo.path], environment: served.azureEnvironment)
            #expect(after.status == 0 && after.stdout.contains("cleanup/vm/leftover"), "\(after)")
            #expect(lockBlobs(try Self.outcome(["--state-dir", state.path])).isEmpty)
        }
    }

    @Test("a shard killed mid-run (kill -9) and rerun alone converges, at once, touching only its own targets")
    func killedShardRerunsAlone() throws {
        try FixtureRepository.with { repo in
            try Self.commitShardedFactory(repo)
            let reference = try { () throws -> Outcome in
                let whole = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env)
                #expect(whole.status == 0, "\(whole)")
                return try Self.outcome(["--repo", repo.path])
            }()
            let state = ["--state-dir", repo.url(".state").path]
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path] + state, environment: Self.env).status == 0)
            let build = try ImageFactory.run(["run", "--factory-only", "--repo", repo.path] + state, environment: Self.env)
            #expect(build.status == 0, "\(build)")

            // Shard 1 of 2 is held once it has started a copy, and killed there; shard 2 runs beside it to the end.
            let killed = try Started(["run", "--shard", "1/2", "--repo", repo.path] + state,
                                     environment: Self.env.merging(["IMAGEFACTORY_LOCAL_HOLD_AFTER": "startBlobCopy"], uniquingKeysWith: { $1 }), watchErrors: true)
            let other = try Started(["run", "--shard", "2/2", "--repo", repo.path, "--report-json", repo.url("out/2.json").path] + state, environment: Self.env)
            #expect(killed.waitFor("holding after startBlobCopy"), "the shard never started a copy")
            let otherResult = other.finish()
            #expect(otherResult.status == 0, "the other shard is not disturbed: \(otherResult)")
            // While shard 1 holds its targets: the same shard again, and a whole run, are refused (exit 75);
            // the refused shard's report still says which shard it was; unlock names the holder.
            let busy = try ImageFactory.run(["run", "--shard", "1/2", "--repo", repo.path, "--report-json", repo.url("out/busy.json").path] + state,
                                            environment: Self.env.merging(Self.noCI, uniquingKeysWith: { $1 }))
            #expect(busy.status == 75 && busy.stderr.contains("The factory is busy: shard 1/2, run "), "\(busy)")
            let busyReport = try JSONDecoder.iso8601.decode(Report.self, from: Data(contentsOf: repo.url("out/busy.json")))
            #expect(busyReport.result == "failed" && busyReport.shard?.index == 1 && busyReport.shard?.count == 2 && busyReport.shard?.targets.isEmpty == false,
                    "\(String(describing: busyReport.shard))")
            let template = "Configuration/GoldenImages/Linux/Ubuntu 22.04 LTS.json"
            try repo.write(template, try String(contentsOf: repo.url(template), encoding: .utf8) + "\n")
            let wholeBusy = try ImageFactory.run(["run", "--worktree", "--repo", repo.path] + state, environment: Self.env)
            #expect(wholeBusy.status == 75 && wholeBusy.stderr.contains("shard 1/2"), "a whole run with work to do waits for the shard: \(wholeBusy)")
            try repo.git("checkout", "--", template)
            let unlock = try ImageFactory.run(["unlock", "--repo", repo.path] + state, environment: Self.env)
            #expect(unlock.status == 64 && unlock.stdout.contains("Shard lock taken by shard 1/2"), "\(unlock)")
            kill(killed.pid, SIGKILL)
            #expect(killed.finish().status != 0)

            let plan = try ImageFactory.run(["plan", "--shards", "2", "--json", "--repo", repo.path], environment: Self.env)
            let assignment = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])
            let shards = try #require(assignment["shards"] as? [[String: Any]])
            let mine = Set(try #require(shards.first { $0["index"] as? Int == 1 }?["labs"] as? [String]))
            let mineTargets = Set(try #require(shards.first { $0["index"] as? Int == 1 }?["targets"] as? [String]))
            let broken = try Self.outcome(state)
            // Not vacuous: the killed shard had started and not finished; the other's labs are complete.
            #expect(broken.summary != reference.summary, "the killed shard had finished before it was killed")
            for (key, value) in reference.summary where !mineTargets.contains(where: { key == $0 || key.hasPrefix($0 + "/") }) && key != "ImageFactory" {
                #expect(broken.summary[key] == value, "\(key) belongs to shard 2, which finished")
            }

            let rerun = try Started(["run", "--shard", "1/2", "--repo", repo.path, "--report-json", repo.url("out/1.json").path] + state, environment: Self.env)
            let result = rerun.finish()
            #expect(result.status == 0, "the rerun takes the killed shard's targets over at once: \(result)")
            let fixed = try Self.outcome(state)
            #expect(fixed.summary == reference.summary)
            fixed.expectNothingLeft(templates: 7)

            // The rerun wrote only in its own labs and their storage, and the factory's lock and state blobs.
            let accounts = Dictionary(uniqueKeysWithValues: fixed.labs.map { ($0.storageAccount, $0.name) })
            let factoryAccount = try #require(fixed.labs.first { $0.name == "ImageFactory" }).storageAccount
            let operations = try String(contentsOf: repo.url(".state/operations.jsonl"), encoding: .utf8).split(separator: "\n")
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let writes = operations.filter { ($0["pid"] as? Int).map(Int32.init) == rerun.pid && $0["write"] as? Bool == true && $0["result"] as? String == "ok" }
            #expect(writes.contains { $0["kind"] as? String == "createCustomImage" }, "not vacuous: the rerun made images")
            for write in writes {
                let resource = write["resource"] as? String ?? ""
                let account = String(resource.split(separator: "/").first ?? "")
                let inMine = (write["lab"] as? String).map(mine.contains)
                    ?? (accounts[account].map(mine.contains) == true || (account == factoryAccount && resource.hasPrefix("\(factoryAccount)/imagefactoryvhds/imagefactory.")))
                #expect(inMine, "the rerun of shard 1 wrote outside its targets: \(write["kind"] ?? "?") \(resource)")
            }
            try Self.expectNothingToDo(repo, count: 2, state: state, environment: Self.env)
        }
    }

    @Test("--shard refusals exit 64 naming what they read; plan --shards prints the assignment; plan --shard only that shard's actions")
    func commandLine() throws {
        try FixtureRepository.with { repo in
            try Self.commitShardedFactory(repo)
            let env = Self.env.merging(Self.noCI, uniquingKeysWith: { $1 })
            func run(_ arguments: [String], _ extra: [String: String] = [:]) throws -> CommandResult {
                try ImageFactory.run(arguments + ["--repo", repo.path], environment: env.merging(extra, uniquingKeysWith: { $1 }))
            }
            let auto = try run(["run", "--shard", "auto"])
            #expect(auto.status == 64, "\(auto)")
            for variable in ["SYSTEM_JOBPOSITIONINPHASE", "SYSTEM_TOTALJOBSINPHASE", "JOB_COMPLETION_INDEX"] {
                #expect(auto.stderr.contains(variable), "\(auto.stderr)")
            }
            let kubernetes = try run(["distribute", "--shard", "auto"], ["JOB_COMPLETION_INDEX": "1"])
            #expect(kubernetes.status == 64 && kubernetes.stderr.contains("JOB_COMPLETION_INDEX=1") && kubernetes.stderr.contains("--shard-count"), "\(kubernetes)")
            for (arguments, text) in [(["run", "--shard", "3/2"], "shard 3 of 2 does not exist"), (["retire", "--shard", "0/2"], "numbered 1 to 2"),
                                      (["run", "--shard", "1/2", "--factory-only"], "--factory-only"), (["run", "--shard", "1/2", "--stages", "build"], "build job"),
                                      (["snap", "--shard", "1/2"], "never in a shard"), (["run", "--shard-count", "2"], "--shard auto"),
                                      (["cleanup", "--shard", "1/2", "--lab", "QALab"], "--lab"), (["plan", "--shards", "0"], "--shards 0")] {
                let result = try run(arguments)
                #expect(result.status == 64, "\(arguments): \(result)")
                #expect(result.stderr.contains(text), "\(arguments): \(result.stderr)")
            }

            let table = try run(["plan", "--shards", "4"])
            #expect(table.status == 0, "\(table)")
            #expect(table.stdout.contains("shard  jobs  share  subscriptions") && table.stdout.contains("1/4") && table.stdout.contains("4/4"), "\(table.stdout)")
            #expect(table.stdout.contains("Split across shards") && table.stdout.contains("11111111-1111-4111-8111-111111111111"), "\(table.stdout)")
            #expect(table.stdout.contains("24 jobs estimated"), "\(table.stdout)")
            #expect(!FileManager.default.fileExists(atPath: repo.url(".imagefactory").path), "plan --shards reads no cloud")

            // Azure Pipelines' variables pick the shard; plan --shard prints only that shard's targets' actions.
            #expect(try run(["local", "init"]).status == 0)
            #expect(try run(["run", "--factory-only"]).status == 0)
            let assignment = try #require(try JSONSerialization.jsonObject(with: Data(try run(["plan", "--shards", "2", "--json"]).stdout.utf8)) as? [String: Any])
            let second = try #require((assignment["shards"] as? [[String: Any]])?.first { $0["index"] as? Int == 2 })
            let targets = Set(try #require(second["targets"] as? [String]))
            let plan = try run(["plan", "--shard", "auto", "--json"], ["SYSTEM_JOBPOSITIONINPHASE": "2", "SYSTEM_TOTALJOBSINPHASE": "2"])
            #expect(plan.status == 0, "\(plan)")
            let planned = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [String: Any])
            let actions = try #require(planned["actions"] as? [[String: Any]])
            #expect(!actions.isEmpty)
            let scope = try #require(planned["scope"] as? [String: Any])
            #expect(scope["kind"] as? String == "shard")
            for action in actions {
                let spec = action["spec"] as? [String: Any] ?? [:]
                let lab = ((spec["image"] as? [String: Any])?["lab"] as? [String: Any])?["name"] as? String
                    ?? (action["lab"] as? [String: Any])?["name"] as? String
                let definition = spec["definition"] as? [String: Any]
                let gallery = (definition?["gallery"] as? [String: Any])?["name"] as? String
                    ?? ((definition?["id"] as? [String: Any])?["gallery"] as? [String: Any])?["name"] as? String
                    ?? ((spec["version"] as? [String: Any])?["definition"] as? [String: Any]).flatMap { ($0["gallery"] as? [String: Any])?["name"] as? String }
                    ?? (spec["gallery"] as? [String: Any])?["name"] as? String
                let target = lab ?? gallery.map { "gallery \($0)" }
                #expect(target.map(targets.contains) == true, "shard 2/2 plans \(action["id"] ?? "?") outside its targets \(targets)")
            }
            let text = try run(["plan", "--shard", "2/2"])
            #expect(text.stdout.contains("For shard 2/2"), "\(text.stdout)")
        }
    }
}

extension JSONDecoder {
    static var iso8601: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
