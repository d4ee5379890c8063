import Foundation
import Testing
import Yams

/// The examples in pipelines/ stay true: their YAML parses and every imagefactory command they
/// run exists with the flags they pass.
struct PipelineExamplesTests {
    static var folder: URL { ImageFactory.packageRoot().appendingPathComponent("pipelines") }

    /// Every string under a key that holds a shell command.
    static func commands(in node: Any, key: String? = nil) -> [String] {
        switch node {
        case let map as [String: Any]: return map.flatMap { commands(in: $0.value, key: $0.key) }
        case let list as [Any]: return list.flatMap { commands(in: $0, key: key) }
        case let text as String: return ["script", "run", "inlineScript", "ExecStart"].contains(key ?? "") ? [text] : []
        default: return []
        }
    }

    /// The shell text of every container in Kubernetes manifests: its command and args, as it runs them.
    static func containerCommands(in node: Any) -> [String] {
        switch node {
        case let map as [String: Any]:
            var found = map.values.flatMap { containerCommands(in: $0) }
            if map["image"] is String, map["command"] != nil || map["args"] != nil {
                let words = (map["command"] as? [Any] ?? []) + (map["args"] as? [Any] ?? [])
                found.append(words.map { "\($0)" }.joined(separator: " "))
            }
            return found
        case let list as [Any]: return list.flatMap { containerCommands(in: $0) }
        default: return []
        }
    }

    /// `imagefactory SUB [args]` invocations in shell text: (subcommand path, flags). A line ending in `\`
    /// goes on on the next, so flags there are checked too; a mention with neither subcommand nor flag
    /// (`chmod +x bin/imagefactory`) runs nothing.
    static func invocations(_ shell: String) -> [(subcommand: [String], flags: [String])] {
        var found: [(subcommand: [String], flags: [String])] = []
        for line in shell.replacingOccurrences(of: "\\\n", with: " ").split(whereSeparator: \.isNewline) {
            let tokens = line.split(separator: " ").map(String.init)
            guard let index = tokens.firstIndex(where: { $0 == "imagefactory" || $0.hasSuffix("/imagefactory") }) else { continue }
            var subcommand: [String] = []
            var flags: [String] = []
            var rest = tokens[(index + 1)...].makeIterator()
            while let token = rest.next() {
                if ["&&", "||", "|", ";", ">", ">>"].contains(token) { break }
                if token.hasPrefix("--") { flags.append(String(token.split(separator: "=")[0])) }
                else if flags.isEmpty && subcommand.count < 2 && token.first?.isLetter == true && !token.contains("/") && !token.contains(".") { subcommand.append(token) }
            }
            if !subcommand.isEmpty || !flags.isEmpty { found.append((subcommand, flags)) }
        }
        return found
    }

    /// Whether help text lists `flag` as a whole word (`--shard` is not in `--shard-count`).
    static func mentions(_ help: String, _ flag: String) -> Bool {
        func partOfFlag(_ c: Character?) -> Bool { c.map { $0.isLetter || $0.isNumber || $0 == "-" } ?? false }
        var rest = help[...]
        while let range = rest.range(of: flag) {
            let before = range.lowerBound == help.startIndex ? nil : help[help.index(before: range.lowerBound)]
            let after = range.upperBound == help.endIndex ? nil : help[range.upperBound]
            if !partOfFlag(before) && !partOfFlag(after) { return true }
            rest = help[range.upperBound...]
        }
        return false
    }

    static func check(_ invocations: [(subcommand: [String], flags: [String])], file: String) throws {
        #expect(!invocations.isEmpty, "\(file) runs no imagefactory command")
        for invocation in invocations {
            let help = try ImageFactory.run(invocation.subcommand + ["--help"])
            #expect(help.status == 0, "\(file): `imagefactory \(invocation.subcommand.joined(separator: " "))` does not exist: \(help)")
            for flag in invocation.flags where !mentions(help.stdout, flag) {
                Issue.record("\(file): `imagefactory \(invocation.subcommand.joined(separator: " "))` has no flag \(flag)")
            }
        }
    }

    static func text(_ file: String) throws -> String {
        try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
    }

    /// The value at a path of keys in parsed YAML.
    static func value(_ node: Any?, _ keys: String...) -> Any? {
        keys.reduce(node) { ($0 as? [String: Any])?[$1] }
    }

    /// Every invocation of `imagefactory` in `shell` that runs `subcommand` (`run`, `doctor`, `plan`).
    static func runs(_ subcommand: String, in shell: [String]) -> [[String]] {
        shell.flatMap { invocations($0) }.filter { $0.subcommand.first == subcommand }.map(\.flags)
    }

    @Test(arguments: ["azure-pipelines.yml", "github-actions.yml"])
    func yamlParsesAndCommandsExist(file: String) throws {
        let text = try String(contentsOf: Self.folder.appendingPathComponent(file), encoding: .utf8)
        let document = try #require(try Yams.load(yaml: text) as? [String: Any], "\(file) is not a YAML mapping")
        let shell = Self.commands(in: document)
        #expect(shell.contains { $0.contains("imagefactory validate") }, "\(file) should validate pull requests")
        #expect(shell.contains { $0.contains("imagefactory plan") && $0.contains("--out") }, "\(file) should publish the plan")
        #expect(shell.contains { $0.contains("--junit") }, "\(file) should publish JUnit results")
        try Self.check(shell.flatMap(Self.invocations), file: file)
        if file == "github-actions.yml" {
            let permissions = document["permissions"] as? [String: Any]
            #expect(permissions?["id-token"] as? String == "write", "OIDC login needs id-token: write")
        }
        if file == "azure-pipelines.yml" {
            #expect(text.contains("PublishTestResults@2") && text.contains("schedules:"))
        }
    }

    @Test func cronWrapperAndSystemdTimer() throws {
        let cron = try String(contentsOf: Self.folder.appendingPathComponent("cron.sh"), encoding: .utf8)
        #expect(cron.contains("flock"), "the cron wrapper must be lock-aware")
        try Self.check(Self.invocations(cron), file: "cron.sh")
        let syntax = try Subprocess.run(URL(fileURLWithPath: "/bin/bash"), ["-n", Self.folder.appendingPathComponent("cron.sh").path], in: Self.folder)
        #expect(syntax.status == 0, "\(syntax)")
        let timer = try String(contentsOf: Self.folder.appendingPathComponent("imagefactory.timer"), encoding: .utf8)
        #expect(timer.contains("OnCalendar="))
        let service = try String(contentsOf: Self.folder.appendingPathComponent("imagefactory.service"), encoding: .utf8)
        #expect(service.contains("ExecStart=") && service.contains("cron.sh"))
    }

    // MARK: - Sharded pipelines (issue 14)

    @Test("Azure Pipelines, sharded: build, 4 parallel shards with their reports published, then the merge")
    func azurePipelinesSharded() throws {
        let file = "azure-pipelines-sharded.yml"
        let document = try #require(try Yams.load(yaml: try Self.text(file)) as? [String: Any], "\(file) is not a YAML mapping")
        let stages = try #require(document["stages"] as? [[String: Any]])
        #expect(stages.map { $0["stage"] as? String } == ["build", "distribute", "merge"])
        guard stages.count == 3 else { return }
        let (build, distribute, merge) = (stages[0], stages[1], stages[2])
        let shard = try #require((distribute["jobs"] as? [[String: Any]])?.first)
        #expect(Self.value(shard, "strategy", "parallel") as? Int == 4, "the shards are a job with strategy: parallel: 4")

        let buildShell = Self.commands(in: build), shardShell = Self.commands(in: distribute), mergeShell = Self.commands(in: merge)
        #expect(Self.runs("doctor", in: buildShell).count == 1, "sign-in is checked first")
        #expect(buildShell.contains { $0.contains("imagefactory run --factory-only") })
        #expect(Self.runs("run", in: shardShell).count == 1 && shardShell.contains { $0.contains("imagefactory run --shard auto") })
        #expect(mergeShell.contains { $0.contains("imagefactory report merge") && $0.contains("--shards 4") && $0.contains("--junit") })
        for flags in Self.runs("run", in: buildShell + shardShell) + Self.runs("doctor", in: buildShell) + Self.runs("plan", in: buildShell) {
            #expect(flags.contains("--auth"), "every command that reads the cloud signs in explicitly")
        }
        #expect((buildShell + shardShell).allSatisfy { !$0.contains("--auth") || $0.contains("--auth azure-devops-oidc") },
                "every job signs in with the workload-identity service connection")
        #expect(Self.runs("run", in: buildShell + shardShell).allSatisfy { $0.contains("--report-json") && $0.contains("--junit") }, "every run writes its reports")
        // Each shard's reports are an artifact of their own, and its JUnit a test run; the merge publishes its own.
        let shardSteps = shard["steps"] as? [[String: Any]] ?? []
        #expect(shardSteps.contains { ($0["artifact"] as? String)?.contains("$(System.JobPositionInPhase)") == true && $0["condition"] as? String == "always()" })
        #expect(shardSteps.contains { $0["task"] as? String == "PublishTestResults@2" })
        let mergeSteps = (merge["jobs"] as? [[String: Any]])?.first?["steps"] as? [[String: Any]] ?? []
        #expect(mergeSteps.contains { $0["task"] as? String == "PublishTestResults@2" })
        #expect(mergeSteps.contains { ($0["task"] as? String)?.hasPrefix("DownloadPipelineArtifact") == true })
        #expect((merge["condition"] as? String)?.contains("canceled()") == true, "the merge runs when a shard failed: \(merge)")
        for stage in [build, distribute] {
            for step in (stage["jobs"] as? [[String: Any]])?.first?["steps"] as? [[String: Any]] ?? [] where step["task"] as? String == "AzureCLI@2" {
                #expect(Self.value(step, "env", "SYSTEM_ACCESSTOKEN") != nil, "the OIDC token request needs the job's token")
            }
        }
        try Self.check((buildShell + shardShell + mergeShell).flatMap(Self.invocations), file: file)
    }

    @Test("GitHub Actions, sharded: build, a matrix of 4 shards uploading their reports, then the merge")
    func githubActionsSharded() throws {
        let file = "github-actions-sharded.yml"
        let document = try #require(try Yams.load(yaml: try Self.text(file)) as? [String: Any], "\(file) is not a YAML mapping")
        #expect(Self.value(document, "permissions", "id-token") as? String == "write", "OIDC login needs id-token: write")
        let jobs = try #require(document["jobs"] as? [String: Any])
        #expect(Set(jobs.keys) == ["build", "shard", "merge"])
        let shard = try #require(jobs["shard"] as? [String: Any]), merge = try #require(jobs["merge"] as? [String: Any])
        #expect((Self.value(shard, "strategy", "matrix", "shard") as? [Int]) == [1, 2, 3, 4])
        #expect(Self.value(shard, "strategy", "fail-fast") as? Bool == false, "one shard failing must not cancel the others")
        #expect(shard["needs"] as? String == "build")
        #expect((merge["needs"] as? [String])?.contains("shard") == true)
        #expect((merge["if"] as? String)?.contains("cancelled()") == true, "the merge runs when a shard failed")

        let buildShell = Self.commands(in: jobs["build"] ?? [:]), shardShell = Self.commands(in: shard), mergeShell = Self.commands(in: merge)
        #expect(Self.runs("doctor", in: buildShell).count == 1)
        #expect(buildShell.contains { $0.contains("imagefactory run --factory-only") })
        #expect(shardShell.contains { $0.contains("imagefactory run --shard ${{ matrix.shard }}/4") })
        #expect(mergeShell.contains { $0.contains("imagefactory report merge") && $0.contains("--shards 4") })
        for flags in Self.runs("run", in: buildShell + shardShell) + Self.runs("doctor", in: buildShell) {
            #expect(flags.contains("--auth"))
        }
        #expect((buildShell + shardShell).allSatisfy { !$0.contains("--auth") || $0.contains("--auth github-oidc") })
        let shardSteps = shard["steps"] as? [[String: Any]] ?? []
        #expect(shardSteps.contains { ($0["uses"] as? String)?.hasPrefix("actions/upload-artifact") == true
                && (Self.value($0, "with", "name") as? String)?.contains("${{ matrix.shard }}") == true && $0["if"] as? String == "always()" })
        let mergeSteps = merge["steps"] as? [[String: Any]] ?? []
        #expect(mergeSteps.contains { ($0["uses"] as? String)?.hasPrefix("actions/download-artifact") == true && Self.value($0, "with", "pattern") as? String == "report-*" })
        try Self.check((buildShell + shardShell + mergeShell).flatMap(Self.invocations), file: file)
    }

    @Test("Kubernetes: a CronJob's night runs the shards as an Indexed Job of 4, then merges their reports")
    func kubernetesIndexedJob() throws {
        let file = "kubernetes-cronjob.yaml"
        var sequence = try Yams.load_all(yaml: try Self.text(file))
        var documents: [[String: Any]] = []
        while let document = sequence.next() {
            documents.append(try #require(document as? [String: Any], "every document of \(file) is a mapping"))
        }
        #expect(sequence.error == nil, "\(file) parses: \(String(describing: sequence.error))")
        let cronJobs = documents.filter { $0["kind"] as? String == "CronJob" }
        let shards = try #require(cronJobs.first { Self.value($0, "spec", "jobTemplate", "spec", "completionMode") as? String == "Indexed" },
                                  "the shards are an Indexed Job")
        let shardJob = try #require(Self.value(shards, "spec", "jobTemplate", "spec") as? [String: Any])
        #expect(shardJob["completions"] as? Int == 4 && shardJob["parallelism"] as? Int == 4)
        #expect(Self.value(shards, "spec", "suspend") as? Bool == true, "the shards' CronJob is a template the night starts, never scheduled itself")
        let shardShell = Self.containerCommands(in: shardJob)
        #expect(shardShell.contains { $0.contains("imagefactory run --shard auto --shard-count 4") }, "\(shardShell)")

        let shardsName = try #require(Self.value(shards, "metadata", "name") as? String)
        let night = try #require(cronJobs.first { Self.value($0, "metadata", "name") as? String != shardsName }, "a second CronJob runs the night")
        let nightShell = Self.containerCommands(in: night)
        #expect(nightShell.contains { $0.contains("imagefactory run --factory-only") })
        #expect(Self.runs("doctor", in: nightShell).count == 1)
        #expect(nightShell.contains { $0.contains("kubectl create job") && $0.contains("--from=cronjob/\(shardsName)") }, "the night starts the shards")
        #expect(nightShell.contains { $0.contains("imagefactory report merge") && $0.contains("--shards 4") })
        // The merge runs after the shards: the night's last container, after its init containers.
        let nightPod = try #require(Self.value(night, "spec", "jobTemplate", "spec", "template", "spec") as? [String: Any])
        let last = Self.containerCommands(in: nightPod["containers"] ?? [])
        #expect(last.count == 1 && last[0].contains("imagefactory report merge"))
        #expect((nightPod["initContainers"] as? [Any])?.count == 3)

        // Workload identity: the label on both pods, the service account they run as, and the sign-in mode.
        for job in [shards, night] {
            #expect(Self.value(job, "spec", "jobTemplate", "spec", "template", "metadata", "labels", "azure.workload.identity/use") as? String == "true")
            let account = Self.value(job, "spec", "jobTemplate", "spec", "template", "spec", "serviceAccountName") as? String
            #expect(documents.contains { $0["kind"] as? String == "ServiceAccount" && Self.value($0, "metadata", "name") as? String == account
                    && Self.value($0, "metadata", "annotations", "azure.workload.identity/client-id") != nil })
        }
        for flags in Self.runs("run", in: shardShell + nightShell) + Self.runs("doctor", in: nightShell) {
            #expect(flags.contains("--auth"))
        }
        #expect((shardShell + nightShell).allSatisfy { !$0.contains("--auth") || $0.contains("--auth workload-identity") })
        try Self.check((shardShell + nightShell).flatMap(Self.invocations), file: file)
    }

    @Test("flags are matched whole: --shard is not found in --shard-count")
    func flagMatching() {
        #expect(Self.mentions("  --shard-count <n>   How many", "--shard-count"))
        #expect(!Self.mentions("  --shard-count <n>   How many", "--shard"))
        #expect(!Self.mentions("  --shards <n>", "--shard"))
        #expect(Self.mentions("--junit <file>", "--junit"))
        let parsed = Self.invocations("bin/imagefactory run --shard 2/4 \\\n  --junit x.xml || exit $?\nchmod +x bin/imagefactory")
        #expect(parsed.count == 1 && parsed[0].subcommand == ["run"] && parsed[0].flags == ["--shard", "--junit"])
    }
}
