import Foundation

/// Time as the factory sees it: the one seam for reading the time and for waiting.
///
/// Lease renewal, retry back-off, polling, time-outs, the local cloud's emulated durations and
/// lease expiry all read this clock, so tests move time by hand (`ManualClock`) instead of
/// sleeping, and production uses the system's clock.
public protocol FactoryClock: Sendable {
    /// The current moment.
    func now() -> Date
    /// Suspends for `seconds` of this clock's time; throws `CancellationError` when the task is cancelled.
    func sleep(seconds: Double) async throws
}

extension FactoryClock {
    /// Seconds from now until `date` (negative when it has passed).
    public func seconds(until date: Date) -> Double { date.timeIntervalSince(now()) }
}

/// The wall clock and real sleeping.
public struct SystemClock: FactoryClock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(seconds: Double) async throws {
        if seconds > 0 { try await Task.sleep(nanoseconds: UInt64(seconds * 1_000_000_000)) } else { try Task.checkCancellation() }
    }
}

/// A clock tests move by hand: `sleep` suspends until `advance` has moved time past its
/// deadline, so lease expiry, soak times and polling are tested without waiting.
public final class ManualClock: FactoryClock, @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `lock` (a small lock-box: `now()` must be synchronous).
    private let lock = NSLock()
    private var current: Date
    private var sleepers: [UUID: (deadline: Date, continuation: CheckedContinuation<Void, Error>)] = [:]

    public init(now: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = now
    }

    public func now() -> Date {
        lock.lock()
        defer { lock.unlock() }
        return current
    }

    /// How many tasks are sleeping on this clock now (tests wait for the code under test to be waiting).
    public var sleeperCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return sleepers.count
    }

    public func sleep(seconds: Double) async throws {
        let id = UUID()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                lock.lock()
                if Task.isCancelled {
                    lock.unlock()
                    continuation.resume(throwing: CancellationError())
                    return
                }
                if seconds <= 0 {
                    lock.unlock()
                    continuation.resume()
                    return
                }
                sleepers[id] = (current.addingTimeInterval(seconds), continuation)
                lock.unlock()
            }
        } onCancel: {
            lock.lock()
            let sleeper = sleepers.removeValue(forKey: id)
            lock.unlock()
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has passed.
    public func advance(by seconds: Double) {
        lock.lock()
        current = current.addingTimeInterval(seconds)
        let due = sleepers.filter { $0.value.deadline <= current }
        for key in due.keys { sleepers.removeValue(forKey: key) }
        lock.unlock()
        for sleeper in due.values { sleeper.continuation.resume() }
    }

    /// Waits (by yielding, never by sleeping) until at least `count` tasks sleep on this clock.
    public func waitForSleepers(_ count: Int = 1) async {
        while sleeperCount < count { await Task.yield() }
    }
}
