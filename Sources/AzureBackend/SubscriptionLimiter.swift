import FactoryModel
import Foundation

/// One adaptive limit on ARM writes per subscription, shared by every job of a run.
///
/// ARM throttles writes per subscription (a token bucket: 200, refilled at 10 a second in the
/// public cloud), so jobs that each retry on their own after a 429 keep the bucket empty and
/// starve one another. Here the subscription's jobs share one window of writes in flight:
/// - a 429 halves the window and pauses every write to the subscription for the Retry-After;
/// - a success whose `x-ms-ratelimit-remaining-subscription-writes` is low lowers it by one;
/// - otherwise each success widens it a little (by 1/window: one per full window of successes),
///   never above `maxConcurrentJobs`.
/// Reads are not limited (ARM counts them in another, much larger bucket) but wait out a pause.
public actor SubscriptionLimiter {
    struct State {
        var window: Double
        var inFlight = 0
        var pausedUntil: Date?
        var waiters: [CheckedContinuation<Void, Never>] = []
        var throttles = 0
        var lowest: Double
    }

    public let maximum: Int
    /// Below this many remaining writes the window shrinks before ARM starts refusing.
    public let lowWater: Int
    let clock: any FactoryClock
    private var states: [String: State] = [:]

    public init(maximum: Int, lowWater: Int = 20, clock: any FactoryClock) {
        self.maximum = max(1, maximum)
        self.lowWater = lowWater
        self.clock = clock
    }

    /// What the limiter saw, for the run report and the benchmark.
    public struct Snapshot: Sendable, Equatable {
        public var window: Int
        public var lowestWindow: Int
        public var throttles: Int
    }

    public func snapshot(_ subscription: String) -> Snapshot {
        let s = states[subscription.lowercased()] ?? State(window: Double(maximum), lowest: Double(maximum))
        return Snapshot(window: Int(s.window), lowestWindow: Int(s.lowest), throttles: s.throttles)
    }

    /// Waits for a write slot on the subscription (and for any pause to end).
    public func acquireWrite(_ subscription: String) async throws {
        let key = subscription.lowercased()
        while true {
            try Task.checkCancellation()
            try await waitOutPause(key)
            var state = states[key] ?? State(window: Double(maximum), lowest: Double(maximum))
            if state.inFlight < max(1, Int(state.window)) {
                state.inFlight += 1
                states[key] = state
                return
            }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                states[key, default: State(window: Double(maximum), lowest: Double(maximum))].waiters.append(continuation)
            }
        }
    }

    /// Waits while the subscription is paused after a 429 (reads and writes alike).
    public func waitOutPause(_ subscription: String) async throws {
        let key = subscription.lowercased()
        while let until = states[key]?.pausedUntil {
            let left = clock.seconds(until: until)
            if left <= 0 {
                states[key]?.pausedUntil = nil
                break
            }
            try await clock.sleep(seconds: left)
        }
    }

    /// Ends a write: `throttledFor` is the pause a 429 asked for; `remaining` is ARM's remaining-writes header.
    public func releaseWrite(_ subscription: String, throttledFor: Double?, remaining: Int?) {
        let key = subscription.lowercased()
        guard var state = states[key] else { return }
        state.inFlight = max(0, state.inFlight - 1)
        adjust(&state, throttledFor: throttledFor, remaining: remaining)
        wakeWaiters(&state)
        states[key] = state
    }

    /// A read was throttled: pause the subscription too (ARM's read bucket is per subscription as well).
    public func readThrottled(_ subscription: String, for seconds: Double) {
        let key = subscription.lowercased()
        var state = states[key] ?? State(window: Double(maximum), lowest: Double(maximum))
        pause(&state, seconds)
        states[key] = state
    }

    private func adjust(_ state: inout State, throttledFor: Double?, remaining: Int?) {
        if let throttledFor {
            state.throttles += 1
            state.window = max(1, state.window / 2)
            pause(&state, throttledFor)
        } else if let remaining, remaining < lowWater {
            state.window = max(1, state.window - 1)
        } else {
            state.window = min(Double(maximum), state.window + 1 / max(1, state.window))
        }
        state.lowest = min(state.lowest, state.window)
    }

    private func pause(_ state: inout State, _ seconds: Double) {
        let until = clock.now().addingTimeInterval(max(0, seconds))
        if state.pausedUntil.map({ $0 < until }) ?? true { state.pausedUntil = until }
    }

    private func wakeWaiters(_ state: inout State) {
        // Wake everyone waiting: each re-checks the window (cheap; the waiters are at most maxConcurrentJobs).
        let waiters = state.waiters
        state.waiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }
}
