import Foundation
import Testing

/// The built binary running the whole factory on fixture repositories against the local cloud.
@Suite(.serialized)
struct FactoryRunTests {
    /// Environment for quick runs: fast latency, short lock leases.
    static let fast = ["IMAGEFACTORY_LOCAL_LATENCY": "fast", "IMAGEFACTORY_LOCK_SECONDS": "1"]
    static let instant = ["IMAGEFACTORY_LOCAL_LATENCY": "instant", "IMAGEFACTORY_LOCK_SECONDS": "1"]

    struct Show: Decodable {
        struct Lab: Decodable {
            var name: String
            var vms: [VM]
            var customImages: [Image]
        }
        struct VM: Decodable {
            var name: String
            var tags: [String: String]
        }
        struct Image: Decodable {
            var name: String
            var tags: [String: String]
        }
        var labs: [Lab]
    }

    static func show(_ repo: FixtureRepository) throws -> Show {
        let result = try ImageFactory.run(["local", "show", "--json", "--repo", repo.path], environment: instant)
        #expect(result.status == 0, "\(result)")
        return try JSONDecoder().decode(Show.self, from: Data(result.stdout.utf8))
    }

    static func operations(_ repo: FixtureRepository) throws -> [[String: Any]] {
        let text = try String(contentsOf: repo.url(".imagefactory/operations.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Every lab holds exactly one image per subscribed path, the factory lab no VMs.
    static func expectFinished(_ repo: FixtureRepository) throws {
        let show = try show(repo)
        let factory = try #require(show.labs.first { $0.name == "ImageFactory" })
        #expect(factory.vms.isEmpty, "factory VMs left: \(factory.vms.map(\.name))")
        let expected = ["DeveloperLab": 4, "TrainingLab": 4, "QALab": 3, "DataScienceLab": 2]
        for (name, count) in expected {
            let lab = try #require(show.labs.first { $0.name == name })
            #expect(lab.customImages.count == count, "\(name): \(lab.customImages.map(\.name))")
            let paths = lab.customImages.compactMap { $0.tags["ImagePath"] }
            #expect(Set(paths).count == paths.count, "duplicate images in \(name)")
        }
    }

    /// Runs the factory again after a killed run: the lock of a holder that is provably gone (this
    /// host, no such process) is taken over at once, with no waiting for its lease to expire.
    static func runWaitingForLock(_ repo: FixtureRepository) throws -> CommandResult {
        try ImageFactory.run(["run", "--repo", repo.path], environment: fast)
    }

    /// Starts `imagefactory run` with the local cloud told to hold every request of `kind` once it
    /// succeeded, and returns when the process says it holds one: the exact moment to interrupt it,
    /// whatever the machine's load. Nil (with an issue recorded) if the run ended first.
    static func startHeldRun(_ repo: FixtureRepository, holdAfter kind: String, environment extra: [String: String] = [:]) throws -> Process? {
        let process = Process()
        process.executableURL = try ImageFactory.binary()
        process.arguments = ["run", "--repo", repo.path]
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("IMAGEFACTORY_") }
        environment["IMAGEFACTORY_LOCAL_HOLD_AFTER"] = kind
        for (key, value) in extra { environment[key] = value }
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        var text = ""
        while !text.contains("holding after \(kind)") {
            let data = errors.fileHandleForReading.availableData  // blocks until the process writes or exits
            if data.isEmpty {
                Issue.record("the run ended before it held at \(kind): \(text)")
                return nil
            }
            text += String(decoding: data, as: UTF8.self)
        }
        return process
    }

    /// Starts `imagefactory run` and returns once it has deployed its first VM.
    static func startRunAndWaitForDeployment(_ repo: FixtureRepository) throws -> Process? {
        #expect(try ImageFactory.run(["local", "init", "--repo", repo.path], environment: instant).status == 0)
        return try startHeldRun(repo, holdAfter: "deployVirtualMachine", environment: ["IMAGEFACTORY_LOCAL_LATENCY": "fast"])
    }

    @Test func fullRunThenNothingToDo() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let first = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.instant)
            #expect(first.status == 0, "\(first)")
            #expect(first.stdout.contains("38 succeeded, 0 failed"), "\(first.stdout)")
            try Self.expectFinished(repo)
            let writesBefore = try Self.operations(repo).filter { $0["write"] as? Bool == true }.count
            let second = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.instant)
            #expect(second.status == 0, "\(second)")
            #expect(second.stdout.contains("0 actions"), "\(second.stdout)")
            let operations = try Self.operations(repo)
            #expect(operations.filter { $0["write"] as? Bool == true }.count == writesBefore)
            #expect(operations.allSatisfy { $0["start"] is String && $0["end"] is String && $0["kind"] is String && $0["result"] is String })
        }
    }

    @Test func killedRunFinishesOnTheNextRun() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let process = try #require(try Self.startRunAndWaitForDeployment(repo))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(process.terminationReason == .uncaughtSignal)
            // Not vacuous: the killed run had started changing the cloud and had not finished.
            let killedWrites = try Self.operations(repo).filter { $0["write"] as? Bool == true && $0["result"] as? String == "ok" }
            #expect(killedWrites.contains { $0["kind"] as? String == "deployVirtualMachine" }, "the run was killed before it did anything")
            #expect(!killedWrites.contains { $0["kind"] as? String == "releaseLease" }, "the run finished before it was killed")
            let again = try Self.runWaitingForLock(repo)
            #expect(again.status == 0, "\(again)")
            try Self.expectFinished(repo)
            let records = try ImageFactory.run(["images", "--json", "--repo", repo.path], environment: Self.instant)
            let list = try JSONSerialization.jsonObject(with: Data(records.stdout.utf8)) as? [[String: Any]] ?? []
            #expect(list.count == 7, "\(records.stdout)")
            let third = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.fast)
            #expect(third.stdout.contains("0 actions"), "\(third)")
        }
    }

    @Test func overlappingRunIsRefused() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            // The first run holds the factory: its deployments are held once made.
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path], environment: Self.instant).status == 0)
            let process = try #require(try Self.startHeldRun(repo, holdAfter: "deployVirtualMachine"))
            let second = try ImageFactory.run(["run", "--repo", repo.path])
            #expect(second.status == 75, "busy has its own exit code: \(second)")
            #expect(second.stderr.contains("The factory is busy: run "), "\(second)")
            #expect(!second.stdout.contains("actions at commit"), "a refused run does not print as if it started: \(second.stdout)")
            // --lock-timeout waits for the busy factory, then gives up with the same refusal.
            let patient = try ImageFactory.run(["run", "--repo", repo.path, "--lock-timeout", "1s"])
            #expect(patient.status == 75, "\(patient)")
            // unlock names the holder and asks for --yes before breaking anything.
            let ask = try ImageFactory.run(["unlock", "--repo", repo.path])
            #expect(ask.status == 64, "\(ask)")
            #expect(ask.stdout.contains("run ") && ask.stdout.contains("--yes"), "\(ask.stdout)")
            #expect(try ImageFactory.run(["run", "--repo", repo.path]).status == 75, "asking broke nothing")
            #expect(second.stderr.contains(" since "), "\(second)")
            #expect(process.isRunning, "the first run still holds the factory")
            // Ctrl-C the first run: it stops cleanly and frees the factory at once.
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
            #expect(process.terminationStatus == 130)
            let third = try ImageFactory.run(["plan", "--repo", repo.path], environment: Self.instant)
            #expect(third.status == 0, "\(third)")
        }
    }

    /// kill -9 at several moments of a run (after a deployment, a disk export, a copy, an image
    /// creation): the next run finishes the work, nothing is duplicated, and nothing is left over.
    @Test(arguments: ["grantDiskAccess", "startBlobCopy", "createCustomImage", "deleteVirtualMachine"])
    func killedAnywhereLeavesNothingBehind(after kind: String) throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path], environment: Self.instant).status == 0)
            let process = try #require(try Self.startHeldRun(repo, holdAfter: kind, environment: ["IMAGEFACTORY_LOCAL_LATENCY": "fast"]))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let reached = try Self.operations(repo).contains { $0["kind"] as? String == kind && $0["result"] as? String == "ok" }
            #expect(reached, "the run never reached \(kind)")

            let again = try Self.runWaitingForLock(repo)
            #expect(again.status == 0, "\(again)")
            try Self.expectFinished(repo)
            // Nothing left over: the factory keeps exactly one VHD and one record per template, the labs no temporary copies.
            let show = try ImageFactory.run(["local", "show", "--json", "--repo", repo.path], environment: Self.instant)
            let labs = (try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])?["labs"] as? [[String: Any]] ?? []
            for lab in labs {
                let containers = lab["containers"] as? [[String: Any]] ?? []
                let blobs = containers.flatMap { ($0["blobs"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String } }
                if lab["name"] as? String == "ImageFactory" {
                    let images = blobs.filter { !$0.hasPrefix("imagefactory.") }
                    #expect(images.filter { $0.hasSuffix(".vhd") }.count == 7, "\(images)")
                    #expect(images.filter { $0.hasSuffix(".json") }.count == 7, "\(images)")
                    #expect(Set(images.map { ($0 as NSString).deletingPathExtension }).count == 7, "VHDs and records pair up: \(images)")
                } else {
                    #expect(blobs.isEmpty, "\(lab["name"] ?? "?") keeps temporary blobs: \(blobs)")
                }
            }
        }
    }

    @Test func interruptExitsWith130() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let process = try #require(try Self.startRunAndWaitForDeployment(repo))
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
            #expect(process.terminationStatus == 130)
            let again = try Self.runWaitingForLock(repo)
            #expect(again.status == 0, "\(again)")
            try Self.expectFinished(repo)
        }
    }

    @Test func foreignResourcesAreNeverTouched() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let env = Self.instant
            #expect(try ImageFactory.run(["local", "add-vm", "--repo", repo.path, "--lab", "ImageFactory", "--name", "stray01"], environment: env).status == 0)
            #expect(try ImageFactory.run(["local", "add-vm", "--repo", repo.path, "--lab", "ImageFactory", "--name", "keeper01", "--tag", "FactoryIgnore=true"], environment: env).status == 0)
            #expect(try ImageFactory.run(["local", "add-image", "--repo", repo.path, "--lab", "QALab", "--name", "handmade", "--tag", "owner=qa"], environment: env).status == 0)
            let run = try ImageFactory.run(["run", "--repo", repo.path, "--ci", "github"], environment: env)
            // An unrecognized VM is reported and left alone: a warning, with its annotation, that fails nothing.
            #expect(run.status == 0, "\(run)")
            #expect(run.stdout.split(separator: "\n").contains { $0.hasPrefix("::warning") && $0.contains("stray01") }, "\(run.stdout)")
            #expect(run.stdout.contains("Result: succeeded, 1 warning"), "\(run.stdout)")
            let show = try Self.show(repo)
            let factory = try #require(show.labs.first { $0.name == "ImageFactory" })
            #expect(Set(factory.vms.map(\.name)) == ["stray01", "keeper01"])
            let qa = try #require(show.labs.first { $0.name == "QALab" })
            #expect(qa.customImages.contains { $0.name == "handmade" })
            #expect(qa.customImages.count == 4)
        }
    }

    @Test func staleSavedPlanIsRefused() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let env = Self.instant
            let planFile = repo.url("plan.json").path
            let plan = try ImageFactory.run(["plan", "--repo", repo.path, "--out", planFile], environment: env)
            #expect(plan.status == 0, "\(plan)")
            let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: planFile))) as? [String: Any]
            #expect(saved?["formatVersion"] as? Int == 2)
            #expect((saved?["actions"] as? [Any])?.count == 38)
            // Someone changes a lab after the plan was made.
            #expect(try ImageFactory.run(["local", "add-image", "--repo", repo.path, "--lab", "QALab", "--name", "handmade"], environment: env).status == 0)
            let apply = try ImageFactory.run(["apply", planFile, "--repo", repo.path], environment: env)
            #expect(apply.status == 2, "\(apply)")
            #expect(apply.stderr.contains("changed since the plan was made"), "\(apply)")
            // A fresh plan applies.
            #expect(try ImageFactory.run(["plan", "--repo", repo.path, "--out", planFile], environment: env).status == 0)
            let again = try ImageFactory.run(["apply", planFile, "--repo", repo.path], environment: env)
            #expect(again.status == 0, "\(again)")
        }
    }

    @Test func dryRunChangesNothing() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let dry = try ImageFactory.run(["run", "--dry-run", "--json", "--repo", repo.path], environment: Self.instant)
            #expect(dry.status == 0, "\(dry)")
            let plan = try JSONSerialization.jsonObject(with: Data(dry.stdout.utf8)) as? [String: Any]
            let actions = plan?["actions"] as? [[String: Any]] ?? []
            #expect(actions.count == 38)
            #expect(Set(actions.compactMap { $0["stage"] as? String }) == ["build", "snap", "distribute", "cleanup"])
            #expect(plan?["commit"] as? String == (try repo.git("rev-parse", "HEAD")))
            #expect((plan?["inventoryFingerprint"] as? String)?.count == 64)
            #expect(dry.stderr.contains("has no lab"), "a plan on a fresh local cloud says the labs are assumed: \(dry.stderr)")
            let operations = try Self.operations(repo)
            #expect(!operations.isEmpty, "the dry run read the cloud")
            #expect(operations.allSatisfy { $0["write"] as? Bool == false }, "\(operations.filter { $0["write"] as? Bool != false })")
        }
    }

    /// Every command documented as read-only, on a fresh cloud and on one with a finished run and
    /// work left to do: the operations log shows reads and not one write.
    @Test func readOnlyCommandsNeverWrite() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            let env = Self.instant
            let html = repo.url("catalogue.html").path
            let readOnly: [[String]] = [
                ["plan"], ["plan", "--json"], ["validate"], ["run", "--dry-run"], ["distribute", "--dry-run"], ["images"], ["images", "--lab", "QALab"],
                ["report", "--html", html],
            ]
            func writes() throws -> Int {
                (try? Self.operations(repo))?.filter { $0["write"] as? Bool == true }.count ?? 0
            }
            func reads() throws -> Int {
                (try? Self.operations(repo))?.filter { $0["write"] as? Bool == false }.count ?? 0
            }
            for command in readOnly {
                _ = try ImageFactory.run(command + ["--repo", repo.path], environment: env)
            }
            #expect(try writes() == 0, "a read-only command wrote to a fresh cloud")
            #expect(try reads() > 0)

            #expect(try ImageFactory.run(["run", "--repo", repo.path], environment: env).status == 0)
            // Work to do again: a changed template and a foreign image.
            let template = "Configuration/GoldenImages/" + (try #require(repo.sampleTemplatePaths.first))
            let text = try String(contentsOf: repo.url(template), encoding: .utf8)
            try repo.commit([template: text + "\n"], message: "Change a template")
            let before = try writes()
            let readsBefore = try reads()
            for command in readOnly {
                let result = try ImageFactory.run(command + ["--repo", repo.path], environment: env)
                #expect(result.status == 0 || command.first == "validate", "\(command): \(result)")
            }
            #expect(try writes() == before, "a read-only command wrote")
            #expect(try reads() > readsBefore)
            #expect(FileManager.default.fileExists(atPath: html))
        }
    }
}
