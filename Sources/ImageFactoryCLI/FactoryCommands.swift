import ArgumentParser
import AzureBackend
import FactoryEngine
import FactoryReports
import FactoryModel
import Foundation
import LocalCloud

/// Flags shared by the commands that plan or run the factory.
struct RunOptions: ParsableArguments {
    @Flag(name: .long, help: "Rebuild every template, changed or not.")
    var force: Bool = false

    @Flag(name: .long, help: "Retire the factory's images in labs an earlier run delivered to that Labs.json no longer lists (counted against --max-deletions).")
    var retireRemovedLabs: Bool = false

    /// The old executor, stage after stage, kept to measure what overlapping stages gains.
    @Flag(name: .long, help: .hidden)
    var stageBarriers: Bool = false

    @Option(name: .long, help: ArgumentHelp("Only this image path: a template or a folder under GoldenImages, by whole segments as in ImagePaths (repeatable).", valueName: "image-path"))
    var only: [String] = []

    @Option(name: .customLong("lab"), help: ArgumentHelp("Only this lab of Labs.json (repeatable); the builds its images need are kept.", valueName: "name"))
    var labs: [String] = []

    /// Checks --only and --lab against the configuration: each must name something, or the run would silently do nothing.
    func check(_ configuration: FactoryConfiguration) throws {
        var problems: [Diagnostic] = []
        for path in only where !configuration.templates.contains(where: { ImagePath.covers(path, $0.path, ignoringCase: true) }) {
            problems.append(.error("--only \(path) matches no template under \(ConfigurationLoader.goldenImagesFolder).",
                                   hint: "Use a template path or a folder as in ImagePaths, e.g. \(configuration.templates.first?.path ?? "Windows/Server.json")."))
        }
        for lab in labs where !configuration.labs.contains(where: { $0.labName.lowercased() == lab.lowercased() }) {
            problems.append(.error("--lab \(lab) is not a lab in Labs.json.", hint: "Use a LabName from Labs.json."))
        }
        if !problems.isEmpty { throw FactoryError(.invalidInput, problems) }
    }
}

/// How a run that changes the cloud treats a busy factory.
struct LockOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Wait this long for a busy factory (e.g. 90s, 10m, 1h; default 0: exit 75 at once).", valueName: "duration"))
    var lockTimeout: String?

    func validate() throws { _ = try seconds() }

    /// The timeout in seconds.
    func seconds() throws -> Double {
        guard let lockTimeout else { return 0 }
        guard let value = Duration.parse(lockTimeout) else {
            throw ValidationError("--lock-timeout \(lockTimeout) is not a duration: use seconds (90), or a number with s, m or h (90s, 10m, 1h30m).")
        }
        return value
    }
}

/// Durations as people write them: `90`, `90s`, `10m`, `1h30m`.
enum Duration {
    static func parse(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let plain = Double(trimmed), plain >= 0 { return plain }
        var total = 0.0
        var number = ""
        for character in trimmed {
            if character.isNumber || character == "." { number.append(character); continue }
            guard let value = Double(number) else { return nil }
            switch character {
            case "s": total += value
            case "m": total += value * 60
            case "h": total += value * 3600
            default: return nil
            }
            number = ""
        }
        return number.isEmpty && !trimmed.isEmpty ? total : nil
    }
}

/// Everything a factory command needs, resolved once: configuration, backend, runner.
struct FactoryContext {
    var configuration: FactoryConfiguration
    var runner: FactoryRunner
    var backend: any CloudBackend

    /// `writes`: whether the command may change the cloud. Commands documented as read-only pass
    /// false and get a backend that refuses every write.
    static func make(repository: RepositoryOptions, settings: SettingsOptions, backendOptions: BackendOptions, writes: Bool) async throws -> FactoryContext {
        let repositoryPath = try repository.repositoryPath()
        let configuration = try loadConfiguration(repository: repository, settings: settings)
        let opened = try await backendOptions.openBackend(repositoryPath: repositoryPath, configuration: configuration, writes: writes)
        for note in opened.notes { Console.err(note) }
        let backend = opened.backend
        let lockSeconds = Double(ProcessInfo.processInfo.environment["IMAGEFACTORY_LOCK_SECONDS"] ?? "") ?? 60
        return FactoryContext(configuration: configuration,
                              runner: FactoryRunner(backend: backend, configuration: configuration, lockSeconds: lockSeconds),
                              backend: backend)
    }
}

extension FactoryContext {
    /// The configuration at the ref, valid and with names Azure takes, or the error to show (exit 2).
    static func loadConfiguration(repository: RepositoryOptions, settings: SettingsOptions) throws -> FactoryConfiguration {
        let snapshot = try repository.source().load()
        let configuration = ConfigurationLoader.load(snapshot, settingsLayers: settings.layers())
        guard configuration.isValid else {
            throw FactoryError(.invalidInput, configuration.diagnostics.filter { $0.severity == .error })
        }
        // What validate lets pass with a warning (the original's placeholders), no backend may be asked for.
        let nameErrors = configuration.azureNameErrors
        guard nameErrors.isEmpty else { throw FactoryError(.invalidInput, nameErrors) }
        return configuration
    }
}

/// The options every factory command shares: where the configuration is, the factory's
/// settings, the backend and the output.
struct FactoryOptions: ParsableArguments {
    @OptionGroup var repository: RepositoryOptions
    @OptionGroup(title: "Factory settings") var settings: SettingsOptions
    @OptionGroup var backend: BackendOptions
    @OptionGroup var output: OutputOptions

    func context(writes: Bool) async throws -> FactoryContext {
        try await FactoryContext.make(repository: repository, settings: settings, backendOptions: backend, writes: writes)
    }
}

/// `imagefactory plan`: what a run would do, changing nothing.
struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Show what a run would do, from the configuration at the ref and the cloud's inventory; change nothing.")

    @OptionGroup var factory: FactoryOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup(title: "Sharding") var sharding: ShardOptions

    @Option(name: .long, help: ArgumentHelp("Print which targets each of N shards owns, its jobs and its share of the work (from the configuration alone), and change nothing.", valueName: "n"))
    var shards: Int?

    @Option(name: .long, help: ArgumentHelp("Save the plan as JSON for `imagefactory apply`.", valueName: "file"))
    var out: String?

    func validate() throws {
        if let shards {
            guard (1...ShardSelection.maximumCount).contains(shards) else {
                throw ValidationError("--shards \(shards) is not a number of shards: use 1 to \(ShardSelection.maximumCount).")
            }
            if sharding.shard != nil || sharding.factoryOnly || out != nil {
                throw ValidationError("--shards N prints the assignment of every shard; --shard, --factory-only and --out plan one part of the factory.")
            }
        }
        try sharding.check(stages: [], explicitStages: false, labs: runOptions.labs)
    }

    func run() async throws {
        do {
            if let shards {
                let configuration = try FactoryContext.loadConfiguration(repository: factory.repository, settings: factory.settings)
                let assignment = ShardAssignment(configuration: configuration, count: shards)
                if factory.output.json { Console.out(try ShardTableRenderer.json(assignment)) } else { ShardTableRenderer.print(assignment) }
                return
            }
            var context = try await factory.context(writes: false)
            try runOptions.check(context.configuration)
            context.runner.scope = try sharding.scope(context.configuration)
            let (full, _) = try await context.runner.plan(force: runOptions.force, retireRemovedLabs: runOptions.retireRemovedLabs)
            let plan = full.restricting(paths: runOptions.only, labs: runOptions.labs)
            if let out { try plan.encoded().write(to: URL(fileURLWithPath: out)) }
            if factory.output.json { Console.out(String(decoding: try plan.encoded(), as: UTF8.self)) } else { PlanRenderer.print(plan) }
            DiagnosticRenderer.printAnnotations(plan.diagnostics, ci: factory.output.ciMode)
            // A plan with errors (a missing lab, too many deletions) would fail: say so to CI gates.
            if plan.diagnostics.hasErrors { throw ExitCode(FactoryExitCode.workFailed.rawValue) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw ErrorMapper.report(error, ci: factory.output.ciMode)
        }
    }
}

/// `imagefactory run`: every stage in order (or `--stages`), or `--dry-run` to print the plan.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the factory: build, snap, distribute, cleanup, retire.")

    @OptionGroup var factory: FactoryOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup(title: "Sharding") var sharding: ShardOptions
    @OptionGroup var lockOptions: LockOptions
    @OptionGroup(title: "Output and reports") var reports: ReportOptions

    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp("Stages to run (default: all): build snap distribute cleanup retire.", valueName: "stage"))
    var stages: [String] = []

    @Flag(name: .long, help: "Print the plan and change nothing.")
    var dryRun: Bool = false

    func validate() throws {
        for stage in stages.flatMap({ $0.split(separator: ",").map(String.init) }) where Stage(rawValue: stage) == nil {
            throw ValidationError("Unknown stage \"\(stage)\": use build, snap, distribute, cleanup or retire.")
        }
        try sharding.check(stages: selectedStages, explicitStages: !stages.isEmpty, labs: runOptions.labs)
    }

    var selectedStages: Set<Stage> {
        let selected = Set(stages.flatMap { $0.split(separator: ",").compactMap { Stage(rawValue: String($0)) } })
        return selected.isEmpty ? Set(Stage.allCases) : selected
    }

    func run() async throws {
        try await FactoryRun.execute(factory, reports: reports, lockTimeout: try lockOptions.seconds(), runOptions: runOptions, sharding: sharding,
                                     stages: selectedStages, dryRun: dryRun, planFile: nil)
    }
}

/// `imagefactory build|snap|distribute|cleanup|retire`: one stage.
struct StageCommand<S: StageName>: AsyncParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: S.stage.rawValue, abstract: "Run only the \(S.stage.rawValue) stage.")
    }

    @OptionGroup var factory: FactoryOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup(title: "Sharding") var sharding: ShardOptions
    @OptionGroup var lockOptions: LockOptions
    @OptionGroup(title: "Output and reports") var reports: ReportOptions

    @Flag(name: .long, help: "Print the plan and change nothing.")
    var dryRun: Bool = false

    func validate() throws {
        try sharding.check(stages: [S.stage], explicitStages: true, labs: runOptions.labs)
    }

    func run() async throws {
        try await FactoryRun.execute(factory, reports: reports, lockTimeout: try lockOptions.seconds(), runOptions: runOptions, sharding: sharding,
                                     stages: [S.stage], dryRun: dryRun, planFile: nil)
    }
}

protocol StageName { static var stage: Stage { get } }
enum BuildStage: StageName { static let stage = Stage.build }
enum SnapStage: StageName { static let stage = Stage.snap }
enum DistributeStage: StageName { static let stage = Stage.distribute }
enum CleanupStage: StageName { static let stage = Stage.cleanup }
enum RetireStage: StageName { static let stage = Stage.retire }

/// `imagefactory apply FILE`: executes a saved plan, refusing a stale one.
struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Execute a saved plan; refuse it if the commit or the cloud changed since.")

    @Argument(help: "The plan file written by `imagefactory plan --out`.")
    var planFile: String

    @OptionGroup var factory: FactoryOptions
    @OptionGroup var lockOptions: LockOptions
    @OptionGroup(title: "Output and reports") var reports: ReportOptions

    func run() async throws {
        try await FactoryRun.execute(factory, reports: reports, lockTimeout: try lockOptions.seconds(), runOptions: nil, sharding: nil,
                                     stages: Set(Stage.allCases), dryRun: false, planFile: planFile)
    }
}

/// The shared body of `run`, the stage commands and `apply`.
enum FactoryRun {
    /// `runOptions` and `sharding` are nil for `apply`, whose saved plan is executed as it is (its scope with it).
    static func execute(_ factory: FactoryOptions, reports: ReportOptions, lockTimeout: Double, runOptions: RunOptions?, sharding: ShardOptions?,
                        stages: Set<Stage>, dryRun: Bool, planFile: String?) async throws {
        let filter = PlanFilter(stages: stages, paths: runOptions?.only ?? [], labs: runOptions?.labs ?? [])
        let ci = factory.output.ciMode
        let startedAt = Date()
        let runID = RunID.make()
        // Made first, so that a run stopped before it started still writes its reports (with the error).
        let console = RunConsole(ci: ci, options: reports, runID: runID, json: factory.output.json && !dryRun)
        let summary: RunSummary
        var azure: AzureBackend?
        // Every report a sharded run writes says which shard it was (its targets once the configuration is read).
        var shard = try? sharding?.selection().map { RunReport.Shard(index: $0.index, count: $0.count, subscriptions: [], targets: []) }
        do {
            var context = try await factory.context(writes: !dryRun)
            azure = BackendOptions.azure(context.backend)
            context.runner.lockTimeout = lockTimeout
            context.runner.stageBarriers = runOptions?.stageBarriers ?? false
            try runOptions?.check(context.configuration)
            context.runner.scope = try sharding?.scope(context.configuration) ?? .whole
            shard = context.runner.scope.reportShard ?? shard
            console.locateFailures(with: ActionSourceLocator(configuration: context.configuration))
            let plan: Plan
            if let planFile {
                let data: Data
                do { data = try Data(contentsOf: URL(fileURLWithPath: planFile)) } catch {
                    throw FactoryError.invalidInput("Cannot read the plan file \(planFile).", file: planFile)
                }
                do { plan = try Plan.decode(data) } catch let e as FactoryError { throw e } catch {
                    throw FactoryError.invalidInput("\(planFile) is not a valid plan: \(error)", file: planFile)
                }
                shard = plan.scope?.reportShard
            } else {
                plan = try await context.runner.plan(force: runOptions?.force ?? false, retireRemovedLabs: runOptions?.retireRemovedLabs ?? false).0
            }
            let selected = filter.apply(to: plan)
            if dryRun {
                if factory.output.json { Console.out(String(decoding: try selected.encoded(), as: UTF8.self)) } else { PlanRenderer.print(selected) }
                DiagnosticRenderer.printAnnotations(selected.diagnostics, ci: ci)
                // A plan with errors (a missing lab, too many deletions) would fail: say so to CI gates.
                if selected.diagnostics.hasErrors { throw ExitCode(FactoryExitCode.workFailed.rawValue) }
                return
            }
            let runner = context.runner
            summary = try await Interrupts.cancellable {
                try await runner.execute(selected, runID: runID, filter: filter, requireSamePlanBasis: planFile != nil,
                                                 events: { console.event($0) })
            }
        } catch let exit as ExitCode {
            // Interrupted (Ctrl-C): the reports still say so.
            if exit.rawValue == FactoryExitCode.interrupted.rawValue, !dryRun {
                console.finishStopped(CancellationError(), runID: runID, startedAt: startedAt, backend: await Self.backendReport(azure), shard: shard)
            }
            throw exit
        } catch {
            let exit = ErrorMapper.report(error, ci: ci)
            if !dryRun { console.finishStopped(error, runID: runID, startedAt: startedAt, backend: await Self.backendReport(azure), shard: shard) }
            throw exit
        }
        var report = RunReport(summary: summary, startedAt: startedAt, finishedAt: Date())
        report.backend = await Self.backendReport(azure)
        report.shard = shard
        if let b = report.backend {
            Console.err("Azure: \(b.armReads + b.armWrites) ARM requests (\(b.armWrites) writes), \(b.storageReads + b.storageWrites) Blob requests (\(b.storageWrites) writes), \(b.retries) retried (\(b.throttled) throttled); correlation id \(b.correlationId ?? "-")")
        }
        do { try console.finish(report, summary: summary) } catch { throw ErrorMapper.report(error, ci: ci) }
        if !summary.succeeded { throw ExitCode(FactoryExitCode.workFailed.rawValue) }
    }
}

extension FactoryRun {
    /// What a run sent to Azure, for the report (also of a run that stopped: support asks for the correlation id).
    static func backendReport(_ azure: AzureBackend?) async -> RunReport.Backend? {
        guard let azure else { return nil }
        let s = await azure.http.statistics()
        return RunReport.Backend(kind: "azure", correlationId: azure.http.correlationID, armReads: s.armReads, armWrites: s.armWrites,
                                 storageReads: s.storageReads, storageWrites: s.storageWrites, retries: s.retries, throttled: s.throttled)
    }
}

enum RunID {
    static func make() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return formatter.string(from: Date()) + "-" + String(UUID().uuidString.prefix(6)).lowercased()
    }
}

/// Ctrl-C cancels the run cleanly: every job sees the cancellation, and the exit code is 130.
enum Interrupts {
    static func cancellable<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let task = Task { try await body() }
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { task.cancel() }
        source.resume()
        defer { source.cancel() }
        do {
            return try await task.value
        } catch {
            if task.isCancelled {
                Console.err("Interrupted: the run was canceled; run again to finish the work.")
                throw ExitCode(FactoryExitCode.interrupted.rawValue)
            }
            throw error
        }
    }
}

/// `imagefactory images`: the factory's VHD records, or one lab's custom images.
struct ImagesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "images", abstract: "List the factory's VHD records, one lab's custom images with --lab, or one gallery's definitions and versions with --gallery.")

    @OptionGroup var factory: FactoryOptions

    @Option(name: .long, help: ArgumentHelp("A lab name from Labs.json (or the factory lab).", valueName: "name"))
    var lab: String?

    @Option(name: .long, help: ArgumentHelp("A gallery name from Labs.json's Galleries.", valueName: "name"))
    var gallery: String?

    func validate() throws {
        if lab != nil && gallery != nil { throw ValidationError("Give --lab or --gallery, not both.") }
    }

    func run() async throws {
        do {
            let context = try await factory.context(writes: false)
            let inventory = try await context.runner.inventory()
            if let gallery {
                guard let target = context.configuration.galleries.first(where: { $0.galleryName.lowercased() == gallery.lowercased() }) else {
                    throw FactoryError.invalidInput("Gallery \(gallery) is not in Labs.json's Galleries.", hint: "Use a GalleryName from Labs.json.")
                }
                let observed = inventory.gallery(target.key)
                let definitions = observed?.definitions ?? []
                if factory.output.json { Console.out(try JSONOutput.encode(definitions)); return }
                if let problem = observed?.problem { throw FactoryError(.backendUnavailable, problem, hint: "Grant the identity read access to \(target.resourceGroup).") }
                guard observed?.gallery != nil else { Console.out("Gallery \(target.galleryName) does not exist yet: a run makes it."); return }
                Console.out("Gallery \(target.galleryName) (\(target.location)): \(definitions.count) image definition\(definitions.count == 1 ? "" : "s")")
                for d in definitions.sorted(by: { $0.definition.id.name < $1.definition.id.name }) {
                    Console.out("  \(d.definition.id.name)  \(d.definition.osType.rawValue) \(d.definition.osState.rawValue)  \(d.definition.publisher)/\(d.definition.offer)/\(d.definition.sku)")
                    for v in d.versions.sorted(by: { VersionNumber($0.id.version) > VersionNumber($1.id.version) }) {
                        let regions = v.replication.isEmpty ? v.targetRegions.map(\.name).joined(separator: ", ")
                            : v.replication.map { "\($0.region) \($0.state.lowercased())" }.joined(separator: ", ")
                        Console.out("    \(v.id.version)  \(v.provisioningState)  \(regions)\(v.excludeFromLatest ? "  excluded from latest" : "")  \(v.tags[FactoryTag.imagePath] ?? "(not the factory's)")")
                    }
                }
                return
            }
            if let lab {
                let images: [CustomImage]
                if lab.lowercased() == inventory.factory.id.name.lowercased() {
                    images = inventory.factoryImages
                } else if let found = inventory.labs.first(where: { $0.lab?.id.name.lowercased() == lab.lowercased() }) {
                    images = found.images
                } else {
                    throw FactoryError.invalidInput("Lab \(lab) is not the factory lab nor in Labs.json.", hint: "Use a LabName from Labs.json.")
                }
                if factory.output.json { Console.out(try JSONOutput.encode(images)) ; return }
                Console.out("Custom images in \(lab): \(images.count)")
                for i in images.sorted(by: { $0.createdAt > $1.createdAt }) {
                    Console.out("  \(i.id.name)  \(i.osType.rawValue)  \(i.provisioningState)  \(i.tags[FactoryTag.imagePath] ?? "(not the factory's)")  \(RecordTimestamp.format(i.createdAt))")
                }
                return
            }
            let records = inventory.records.sorted { ($0.imagePath, $0.timestamp) < ($1.imagePath, $1.timestamp) }
            if factory.output.json { Console.out(try JSONOutput.encode(records)); return }
            Console.out("VHD records in the factory storage: \(records.count)")
            for r in records {
                Console.out("  \(r.imageName)  \(r.imagePath)  \(r.osType.rawValue)  \((r.osState ?? .generalized).rawValue)  \(r.commit.map { String($0.prefix(12)) } ?? "-")  \(RecordTimestamp.format(r.timestamp))")
            }
        } catch {
            throw ErrorMapper.report(error, ci: factory.output.ciMode)
        }
    }
}

/// `imagefactory report --html FILE`: the golden image catalogue.
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "catalogue", abstract: "Write the golden image catalogue: one self-contained HTML page (the default of `report`).")

    @OptionGroup var factory: FactoryOptions

    @Option(name: .long, help: ArgumentHelp("Where to write the HTML catalogue.", valueName: "file"))
    var html: String

    func validate() throws {
        if factory.output.json { throw ValidationError("`report` writes an HTML page; --json does not apply to it.") }
    }

    func run() async throws {
        do {
            let context = try await factory.context(writes: false)
            let inventory = try await context.runner.inventory()
            let page = CatalogRenderer.html(context.configuration, inventory: inventory, generatedAt: Date())
            let url = URL(fileURLWithPath: html)
            do {
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(page.utf8).write(to: url)
            } catch {
                throw FactoryError.invalidInput("Cannot write the catalogue to \(url.path): \(error.localizedDescription)",
                                                file: url.path, hint: "Choose a path in a folder you can write to.")
            }
            Console.out("Wrote the catalogue of \(context.configuration.templates.count) golden images to \(html)")
        } catch {
            throw ErrorMapper.report(error, ci: factory.output.ciMode)
        }
    }
}

/// `imagefactory unlock`: breaks the factory's lock on purpose, after naming who holds it.
struct UnlockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unlock",
        abstract: "Break the factory's lock, and every shard's, on purpose (a run on another machine that is gone); asks for --yes.",
        discussion: "A lock left by a run killed on this machine is taken over by the next run at once, and any lock expires a minute after its holder stopped renewing it: unlock is for when waiting is not an option.")

    @OptionGroup var factory: FactoryOptions

    @Flag(name: .long, help: "Break the lock: without it, unlock only says who holds it.")
    var yes: Bool = false

    func validate() throws {
        if factory.output.json { throw ValidationError("`unlock` prints a sentence for people; --json does not apply to it.") }
    }

    func run() async throws {
        do {
            let context = try await factory.context(writes: yes)
            let lock = try await context.runner.lock()
            let holder = try? await lock.currentHolder()
            let who = holder.map(\.description) ?? "an unknown holder"
            let shards = (try? await lock.shardHolders()) ?? []
            func describe(_ shard: LockHolder) -> String {
                let targets = (shard.targets ?? []).map(FactoryLock.label(ofTarget:))
                return "\(shard.description), on \(targets.count) target\(targets.count == 1 ? "" : "s")\(targets.isEmpty ? "" : ": " + targets.joined(separator: ", "))"
            }
            guard yes else {
                Console.out("The factory lock was last taken by \(who).")
                for shard in shards { Console.out("Shard lock taken by \(describe(shard)).") }
                Console.out("Breaking it lets another run start while that one may still be working. Run `imagefactory unlock --yes` to break it.")
                throw ExitCode(FactoryExitCode.usage.rawValue)
            }
            _ = try await lock.breakLock()
            Console.out("Broke the factory lock held by \(who).")
            for shard in shards { Console.out("Broke the shard lock held by \(describe(shard)).") }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw ErrorMapper.report(error, ci: factory.output.ciMode)
        }
    }
}
