import FactoryModel
import Foundation

/// The one scheduler of a run: walks the plan's dependency graph and keeps at most
/// `maxConcurrentJobs` actions in flight. An action starts as soon as every action it depends
/// on has succeeded (and every action it must come `after` has ended); one whose dependency
/// failed, was skipped or is not part of this execution is skipped without taking a slot.
/// Stages overlap: a lab gets an image as soon as that image is captured, not when every build
/// is done. Builds, which can take hours, hold at most half the slots once other work waits for
/// a slot or an image has been captured (while distributions remain), so they cannot starve
/// distributions; with nothing else to do they may use every slot. With `stageBarriers` (the old behaviour, kept for
/// comparison) an action also waits until every action of the earlier stages has finished.
/// Cancellation reaches every job through the task group.
public struct PlanScheduler: Sendable {
    public var maxConcurrentJobs: Int
    public var stageBarriers: Bool

    public init(maxConcurrentJobs: Int, stageBarriers: Bool = false) {
        self.maxConcurrentJobs = max(1, maxConcurrentJobs)
        self.stageBarriers = stageBarriers
    }

    /// What the scheduler tells its caller as the run goes.
    public enum Progress: Sendable {
        case stageStarted(Stage, actions: Int)
        case stageFinished(Stage, succeeded: Int, failed: Int, skipped: Int)
    }

    /// Runs `actions` (a plan's, in plan order) through `perform`, and `skip` for those whose
    /// dependencies did not succeed. Returns every result in the order actions finished.
    public func run(_ actions: [PlanAction],
                    progress: @Sendable (Progress) -> Void,
                    skip: @Sendable (PlanAction, _ dependency: String, _ ran: Bool) -> ActionResult,
                    perform: @escaping @Sendable (PlanAction) async -> ActionResult) async throws -> [ActionResult] {
        var graph = Graph(actions)
        var results: [ActionResult] = []
        results.reserveCapacity(actions.count)
        var stageCounts: [Stage: (succeeded: Int, failed: Int, skipped: Int)] = [:]
        var remainingInStage: [Stage: Int] = [:]
        for action in actions { remainingInStage[action.stage, default: 0] += 1 }
        var startedStages = Set<Stage>()
        let stagesInOrder = Stage.allCases.filter { remainingInStage[$0] != nil }

        func record(_ result: ActionResult) {
            results.append(result)
            let stage = result.action.stage
            var counts = stageCounts[stage] ?? (0, 0, 0)
            switch result.outcome {
            case .succeeded: counts.succeeded += 1
            case .failed: counts.failed += 1
            case .skipped: counts.skipped += 1
            }
            stageCounts[stage] = counts
            remainingInStage[stage, default: 0] -= 1
            if remainingInStage[stage] == 0 {
                if !startedStages.contains(stage) {
                    startedStages.insert(stage)
                    progress(.stageStarted(stage, actions: counts.succeeded + counts.failed + counts.skipped))
                }
                progress(.stageFinished(stage, succeeded: counts.succeeded, failed: counts.failed, skipped: counts.skipped))
            }
        }

        /// The earliest stage that still has unfinished actions (barrier mode runs only that one).
        func openStage() -> Stage? { stagesInOrder.first { (remainingInStage[$0] ?? 0) > 0 } }

        func announce(_ stage: Stage) {
            guard !startedStages.contains(stage) else { return }
            startedStages.insert(stage)
            progress(.stageStarted(stage, actions: actions.lazy.filter { $0.stage == stage }.count))
        }

        /// Builds' share of the slots once other work waits for slots or images are being captured
        /// (so that distributions will come): below that, builds may use every slot.
        let buildShare = max(1, (maxConcurrentJobs + 1) / 2)
        var inFlightByStage: [Stage: Int] = [:]
        var capturesDone = 0
        func buildsCapped() -> Bool {
            guard !stageBarriers, (inFlightByStage[.build] ?? 0) >= buildShare, (remainingInStage[.distribute] ?? 0) > 0 else { return false }
            return capturesDone > 0 || graph.hasReady(except: .build)
        }

        try await withThrowingTaskGroup(of: (Int, ActionResult).self) { group in
            var inFlight = 0
            /// Starts what may start now; resolves skips at once (they may unblock or skip more).
            func fill() {
                while true {
                    var progressed = false
                    while let index = graph.nextReady(allowedStage: stageBarriers ? openStage() : nil, excluding: buildsCapped() ? [.build] : []) {
                        let action = graph.actions[index]
                        if let blocker = graph.blocker(of: index) {
                            announce(action.stage)
                            let result = skip(action, blocker.id, blocker.ran)
                            graph.finish(index, succeeded: false)
                            record(result)
                            progressed = true
                            continue
                        }
                        guard inFlight < maxConcurrentJobs else {
                            graph.unpop(index)
                            return
                        }
                        announce(action.stage)
                        inFlight += 1
                        inFlightByStage[action.stage, default: 0] += 1
                        group.addTask { (index, await perform(action)) }
                        progressed = true
                    }
                    if !progressed { return }
                }
            }
            fill()
            while let (index, result) = try await group.next() {
                inFlight -= 1
                inFlightByStage[result.action.stage, default: 1] -= 1
                if result.action.stage == .snap && result.outcome == .succeeded { capturesDone += 1 }
                graph.finish(index, succeeded: result.outcome == .succeeded)
                record(result)
                try Task.checkCancellation()
                fill()
            }
        }
        // Actions in a dependency cycle never became ready: say so rather than drop them.
        for index in graph.unfinished {
            let action = graph.actions[index]
            announce(action.stage)
            record(skip(action, action.dependsOn.first ?? action.id, false))
        }
        return results
    }
}

/// The plan's actions as a graph: in-degree counting over dependencies inside the plan, one
/// ready queue per stage (in plan order), and what each finished action unblocks.
struct Graph {
    let actions: [PlanAction]
    private let indexByID: [String: Int]
    private var waitingOn: [Int]
    private var dependents: [[Int]]
    private var outcome: [Bool?]
    /// The first dependency that is not an action of this execution (its stage was not selected).
    private var missing: [String?]
    private var ready: [Stage: [Int]] = [:]
    private var readyHead: [Stage: Int] = [:]

    init(_ actions: [PlanAction]) {
        self.actions = actions
        var index: [String: Int] = [:]
        for (i, a) in actions.enumerated() where index[a.id] == nil { index[a.id] = i }
        indexByID = index
        waitingOn = Array(repeating: 0, count: actions.count)
        dependents = Array(repeating: [], count: actions.count)
        outcome = Array(repeating: nil, count: actions.count)
        missing = Array(repeating: nil, count: actions.count)
        for (i, a) in actions.enumerated() {
            for dependency in a.dependsOn {
                if let j = index[dependency], j != i {
                    waitingOn[i] += 1
                    dependents[j].append(i)
                } else if missing[i] == nil {
                    missing[i] = dependency
                }
            }
            // Ordering only: an action outside this execution is simply not waited for.
            for earlier in Set(a.after).subtracting(a.dependsOn) {
                if let j = index[earlier], j != i {
                    waitingOn[i] += 1
                    dependents[j].append(i)
                }
            }
        }
        for i in actions.indices where waitingOn[i] == 0 { ready[actions[i].stage, default: []].append(i) }
    }

    /// The first dependency that holds the action back: one that did not succeed, or is not in this execution.
    func blocker(of index: Int) -> (id: String, ran: Bool)? {
        if let id = missing[index] { return (id, false) }
        for dependency in actions[index].dependsOn {
            if let i = indexByID[dependency], outcome[i] == false { return (dependency, true) }
        }
        return nil
    }

    /// The next action whose dependencies have all finished: from `allowedStage` only when given,
    /// else from the earliest stage that has one, leaving `excluding` stages' actions queued.
    mutating func nextReady(allowedStage: Stage?, excluding: Set<Stage> = []) -> Int? {
        for stage in allowedStage.map({ [$0] }) ?? Stage.allCases where !excluding.contains(stage) {
            let head = readyHead[stage] ?? 0
            if let queue = ready[stage], head < queue.count {
                readyHead[stage] = head + 1
                return queue[head]
            }
        }
        return nil
    }

    /// Puts back the action `nextReady` just gave, when no slot was free for it.
    mutating func unpop(_ index: Int) {
        readyHead[actions[index].stage, default: 1] -= 1
    }

    /// Whether an action of another stage than `stage` is ready to start.
    func hasReady(except stage: Stage) -> Bool {
        ready.contains { $0.key != stage && (readyHead[$0.key] ?? 0) < $0.value.count }
    }

    /// Actions that never finished (a dependency cycle).
    var unfinished: [Int] { actions.indices.filter { outcome[$0] == nil } }

    mutating func finish(_ index: Int, succeeded: Bool) {
        outcome[index] = succeeded
        for next in dependents[index] {
            waitingOn[next] -= 1
            if waitingOn[next] == 0 { ready[actions[next].stage, default: []].append(next) }
        }
    }
}
