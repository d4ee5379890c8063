import FactoryModel
import Foundation

/// One adaptive limit on ARM writes per subscription, shared by every job of a run.
///
/// ARM throttles writes per subscription (a token bucket: 200, refilled at 10 a second in the
/// public cloud), so jobs that each retry on their own after a 429 keep the bucket empty and
/// starve one another. Here the subscription's jobs share one window of writes in flight:
/// - writes are paced by ARM's own count: no more writes go out than the last
///   `x-ms-ratelimit-remaining-subscription-writes` leaves room for, and when the bucket is empty
///   one write probes it every quarter second, so the bucket's refill is used as it comes;
/// - a 429 (when pacing could not prevent one) halves the window and pauses every write to the
///   subscription for the Retry-After;
/// - each success widens the window a little (by 1/window: one per full window of successes),
///   never above `maxConcurrentJobs`.
/// Reads are not limited (ARM counts them in another, much larger bucket) but wait out a pause.
public actor SubscriptionLimiter {
    struct State {
        var window: Double
        var inFlight = 0
        var pausedUntil: Date?
        var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
        var throttles = 0
        var lowest: Double
        /// ARM's last word on the bucket: writes remaining, and when it said so.
        var remaining: Int?
        var remainingAt = Date.distantPast
    }

    /// How often one write may probe an empty bucket.
    public static let probeInterval = 0.25

    public let maximum: Int
    let clock: any FactoryClock
    private var states: [String: State] = [:]

    public init(maximum: Int, clock: any FactoryClock) {
        self.maximum = max(1, maximum)
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
            let budget = state.remaining.map { $0 - state.inFlight } ?? Int.max
            if state.inFlight < max(1, Int(state.window)) && budget > 0 {
                state.inFlight += 1
                states[key] = state
                return
            }
            if budget <= 0 && state.inFlight == 0 {
                // The bucket was empty when last heard of and nothing in flight will say more: probe it after a moment.
                let wait = Self.probeInterval - clock.now().timeIntervalSince(state.remainingAt)
                if wait <= 0 {
                    state.inFlight += 1
                    states[key] = state
                    return
                }
                try await clock.sleep(seconds: wait)
                continue
            }
            // Wait for a write to end; a cancelled task is woken at once and throws at the top of the loop.
            let id = UUID()
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    if Task.isCancelled {
                        continuation.resume()
                    } else {
                        states[key, default: State(window: Double(maximum), lowest: Double(maximum))].waiters[id] = continuation
                    }
                }
            } onCancel: {
                Task { await self.wake(key, id) }
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
        if let remaining {
            state.remaining = remaining
            state.remainingAt = clock.now()
        } else if throttledFor != nil {
            state.remaining = 0
            state.remainingAt = clock.now()
        }
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

    private func adjust(_ state: inout State, throttledFor: Double?, remaining _: Int?) {
        if let throttledFor {
            state.throttles += 1
            state.window = max(1, state.window / 2)
            pause(&state, throttledFor)
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
        let waiters = state.waiters.values
        state.waiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// Wakes one waiter (its task was cancelled).
    private func wake(_ key: String, _ id: UUID) {
        states[key]?.waiters.removeValue(forKey: id)?.resume()
    }
}
