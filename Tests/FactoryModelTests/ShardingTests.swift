import FactoryModel
import Foundation
import Testing

/// The shard assignment (a pure function of the configuration and N) and `--shard` parsing.
@Suite("Sharding: assignment and --shard")
struct ShardingTests {
    static let subA = "aaaaaaaa-0000-4000-8000-000000000001"
    static let subB = "bbbbbbbb-0000-4000-8000-000000000002"
    static let subC = "cccccccc-0000-4000-8000-000000000003"
    static let subD = "dddddddd-0000-4000-8000-000000000004"

    static func lab(_ name: String, _ subscription: String, jobs: Int) -> ShardTarget {
        ShardTarget(kind: .lab, name: name, key: "\(subscription)/\(name.lowercased())", subscription: subscription, jobs: jobs)
    }

    /// Each target is in exactly one shard.
    static func expectPartition(_ assignment: ShardAssignment, of targets: [ShardTarget], sourceLocation: SourceLocation = #_sourceLocation) {
        let assigned = assignment.shards.flatMap(\.targets).map(\.lockName)
        #expect(assigned.count == Set(assigned).count, "a target is in two shards", sourceLocation: sourceLocation)
        #expect(Set(assigned) == Set(targets.map(\.lockName)), "a target is in no shard", sourceLocation: sourceLocation)
        #expect(assignment.shards.map(\.index) == Array(1...assignment.count), sourceLocation: sourceLocation)
        #expect(assignment.shards.reduce(0) { $0 + $1.jobs } == assignment.totalJobs, sourceLocation: sourceLocation)
    }

    /// Which subscriptions more than one shard shares.
    static func sharedSubscriptions(_ assignment: ShardAssignment) -> Set<String> {
        var seen: [String: Int] = [:]
        for shard in assignment.shards { for s in shard.subscriptions { seen[s, default: 0] += 1 } }
        return Set(seen.filter { $0.value > 1 }.keys)
    }

    @Test("subscriptions stay whole: three subscriptions of equal work on three shards, one each")
    func subscriptionsStayWhole() {
        let targets = [Self.lab("A1", Self.subA, jobs: 2), Self.lab("A2", Self.subA, jobs: 2), Self.lab("B1", Self.subB, jobs: 3),
                       Self.lab("B2", Self.subB, jobs: 1), Self.lab("C1", Self.subC, jobs: 4)]
        let assignment = ShardAssignment(targets: targets, count: 3)
        Self.expectPartition(assignment, of: targets)
        #expect(assignment.shards.allSatisfy { $0.subscriptions.count == 1 }, "\(assignment.shards.map(\.subscriptions))")
        #expect(assignment.shards.map(\.jobs).sorted() == [4, 4, 4])
        #expect(assignment.splitSubscriptions.isEmpty)
        #expect(Self.sharedSubscriptions(assignment).isEmpty)
    }

    @Test("balanced by jobs: largest first onto the lightest shard; every shard within one unit of the fair share")
    func balancedByJobs() {
        // Eight subscriptions of one lab each, jobs 8, 7, 6, 5, 4, 3, 2, 1 (36 in all) on 3 shards:
        // 8, 7, 6; then 5 onto the 6 (11), 4 onto the 7 (11), 3 onto the 8 (11); 2 onto shard 1 (13), 1 onto shard 2 (12).
        let subscriptions = (1...8).map { String(format: "%08d-0000-4000-8000-000000000000", $0) }
        let targets = subscriptions.enumerated().map { i, sub in Self.lab("Lab\(i)", sub, jobs: 8 - i) }
        let assignment = ShardAssignment(targets: targets, count: 3)
        Self.expectPartition(assignment, of: targets)
        #expect(assignment.shards.map(\.jobs) == [13, 12, 11], "\(assignment.shards.map(\.jobs))")
        #expect(assignment.shards.map(\.targets).map { $0.map(\.jobs) } == [[8, 3, 2], [7, 4, 1], [6, 5]])
        #expect(abs(assignment.share(of: assignment.shard(1)) - 13.0 / 36) < 1e-9)
        // Any N: no shard exceeds the fair share by more than the largest unit (the LPT bound), none is idle while work is left.
        for n in 1...8 {
            let a = ShardAssignment(targets: targets, count: n)
            Self.expectPartition(a, of: targets)
            let fair = Double(a.totalJobs) / Double(n)
            #expect(a.shards.allSatisfy { Double($0.jobs) <= fair + 8 }, "N=\(n): \(a.shards.map(\.jobs))")
            #expect(a.shards.allSatisfy { !$0.targets.isEmpty }, "N=\(n): a shard got nothing")
        }
    }

    @Test("a subscription alone over the fair share is split into pieces, and only that one")
    func hugeSubscriptionIsSplit() {
        // Subscription A: 8 labs of one job; B: one lab of one job. 9 jobs on 3 shards: a fair share is 3.
        let big = (1...8).map { Self.lab("Big\($0)", Self.subA, jobs: 1) }
        let targets = big + [Self.lab("Small", Self.subB, jobs: 1)]
        let assignment = ShardAssignment(targets: targets, count: 3)
        Self.expectPartition(assignment, of: targets)
        #expect(assignment.splitSubscriptions == [Self.subA])
        #expect(assignment.shards.map(\.jobs) == [3, 3, 3], "\(assignment.shards.map(\.jobs))")
        #expect(Self.sharedSubscriptions(assignment) == [Self.subA], "only the huge subscription is shared")
        // B is never cut, and at most ⌈8/3⌉ = 3 pieces of A exist.
        #expect(assignment.shards.filter { $0.subscriptions.contains(Self.subB) }.count == 1)
        #expect(assignment.shards.filter { $0.subscriptions.contains(Self.subA) }.count == 3)

        // With a fair share the huge subscription fits in, nothing is split.
        let two = ShardAssignment(targets: [Self.lab("A1", Self.subA, jobs: 3), Self.lab("A2", Self.subA, jobs: 2), Self.lab("B1", Self.subB, jobs: 5)], count: 2)
        #expect(two.splitSubscriptions.isEmpty)
        #expect(Self.sharedSubscriptions(two).isEmpty)
    }

    @Test("the same on every job: independent of the order targets are listed in, and of Labs.json's order")
    func deterministic() throws {
        let targets = [Self.lab("A1", Self.subA, jobs: 2), Self.lab("A2", Self.subA, jobs: 2), Self.lab("B1", Self.subB, jobs: 2),
                       Self.lab("B2", Self.subB, jobs: 2), Self.lab("C1", Self.subC, jobs: 2), Self.lab("D1", Self.subD, jobs: 2),
                       ShardTarget(kind: .gallery, name: "Shared.Images", key: "\(Self.subC)/rg/shared.images", subscription: Self.subC, jobs: 2)]
        let reference = ShardAssignment(targets: targets, count: 3)
        var generator = SplitMix64(seed: 42)
        for _ in 0..<20 {
            #expect(ShardAssignment(targets: targets.shuffled(using: &generator), count: 3) == reference)
        }
        // Ties (equal jobs everywhere) are broken by subscription: A on shard 1, B on 2, C on 3, then D on the lightest, the first.
        #expect(reference.shards.map { $0.targets.map(\.name) } == [["A1", "A2", "D1"], ["B1", "B2"], ["Shared.Images", "C1"]])

        // From a configuration: Labs.json in two orders, the same assignment.
        let labs = [("DevLab", Self.subA, ["Windows"]), ("QALab", Self.subB, ["Linux"]), ("TrainLab", Self.subA, ["Windows", "Linux"]),
                    ("DataLab", Self.subC, ["Linux/Ubuntu.json"])]
        func configuration(_ order: [Int]) throws -> FactoryConfiguration {
            var fixture = ConfigFixture([
                "GoldenImages/Windows/Server.json": Fixture.template(), "GoldenImages/Windows/Desktop.json": Fixture.template(),
                "GoldenImages/Linux/Ubuntu.json": Fixture.template(osType: "Linux"),
            ])
            fixture["Labs.json"] = Fixture.labs(order.map { Fixture.Lab(subscriptionId: labs[$0].1, labName: labs[$0].0, imagePaths: labs[$0].2) })
            let loaded = try fixture.load()
            try #require(!loaded.diagnostics.hasErrors, "\(loaded.diagnostics)")
            return loaded
        }
        let forward = try configuration([0, 1, 2, 3])
        let backward = try configuration([3, 2, 1, 0])
        for n in 1...4 {
            #expect(ShardAssignment(configuration: forward, count: n) == ShardAssignment(configuration: backward, count: n), "N=\(n)")
        }
        // Jobs come from the configuration: a lab's subscribed templates.
        let jobs = Dictionary(uniqueKeysWithValues: forward.shardTargets.map { ($0.name, $0.jobs) })
        #expect(jobs == ["DevLab": 2, "QALab": 1, "TrainLab": 3, "DataLab": 1])
    }

    @Test("galleries are targets of their subscription, weighted by templates × regions")
    func galleriesAreTargets() throws {
        var configuration = try ConfigFixture([
            "GoldenImages/Windows/Server.json": Fixture.template(), "GoldenImages/Linux/Ubuntu.json": Fixture.template(osType: "Linux"),
            "Labs.json": Fixture.labs([Fixture.Lab(subscriptionId: Self.subA, labName: "DevLab", imagePaths: ["Windows"])]),
        ]).load()
        configuration.galleries = [GalleryTarget(subscriptionId: Self.subB, resourceGroup: "rg-images", galleryName: "Contoso.Images", location: "westeurope",
                                                 imagePaths: ["Windows", "Linux"], images: ["Linux/Ubuntu.json", "Windows/Server.json"],
                                                 targetRegions: [GalleryRegion(name: "westeurope"), GalleryRegion(name: "northeurope"), GalleryRegion(name: "eastus")])]
        let targets = configuration.shardTargets
        let gallery = try #require(targets.first { $0.kind == .gallery })
        #expect(gallery.jobs == 6)
        #expect(gallery.label == "gallery Contoso.Images")
        #expect(gallery.subscription == Self.subB)
        let assignment = ShardAssignment(configuration: configuration, count: 2)
        #expect(assignment.shard(1).targets.map(\.label) == ["gallery Contoso.Images"])
        #expect(assignment.shard(2).targets.map(\.label) == ["DevLab"])
        let scope = assignment.scope(ShardSelection(index: 1, count: 2))
        let restricted = configuration.restricted(to: .shard(scope))
        #expect(restricted.labs.isEmpty && restricted.galleries.map(\.galleryName) == ["Contoso.Images"])
        #expect(configuration.restricted(to: .factory).labs.isEmpty && configuration.restricted(to: .factory).galleries.isEmpty)
        #expect(configuration.restricted(to: .whole).labs.count == 1)
        #expect(scope.labels == ["gallery Contoso.Images"] && scope.subscriptions == [Self.subB])
    }

    @Test("more shards than subscriptions: the rest own nothing; one shard owns everything")
    func edges() {
        let targets = [Self.lab("A1", Self.subA, jobs: 1), Self.lab("B1", Self.subB, jobs: 1)]
        let four = ShardAssignment(targets: targets, count: 4)
        Self.expectPartition(four, of: targets)
        #expect(four.shards.filter { $0.targets.isEmpty }.count == 2)
        let one = ShardAssignment(targets: targets, count: 1)
        #expect(one.shard(1).targets.count == 2 && one.splitSubscriptions.isEmpty)
        #expect(ShardAssignment(targets: [], count: 2).shards.allSatisfy { $0.targets.isEmpty })
    }

    @Test("a run scope survives a saved plan's JSON")
    func scopeCoding() throws {
        let scope = RunScope.shard(ShardScope(index: 2, count: 3, targets: [Self.lab("A1", Self.subA, jobs: 2)]))
        for value in [RunScope.whole, .factory, scope] {
            #expect(try JSONDecoder().decode(RunScope.self, from: JSONEncoder().encode(value)) == value)
        }
        #expect(scope.includesFactoryWork == false && RunScope.factory.includesFactoryWork && RunScope.whole.includesTargets)
        #expect(!RunScope.factory.includesTargets)
    }

    // MARK: --shard

    static func resolve(_ text: String, count: Int? = nil, _ environment: [String: String] = [:]) throws -> ShardSelection {
        try ShardSelection.resolve(text, count: count, environment: environment)
    }

    static func refusal(_ text: String, count: Int? = nil, _ environment: [String: String] = [:],
                        sourceLocation: SourceLocation = #_sourceLocation) -> String {
        do {
            let selection = try resolve(text, count: count, environment)
            Issue.record("--shard \(text) was accepted as \(selection)", sourceLocation: sourceLocation)
            return ""
        } catch {
            #expect(error is ShardSelectionError, sourceLocation: sourceLocation)
            return "\(error)"
        }
    }

    @Test("--shard I/N: 1-based, I within N")
    func explicitShard() throws {
        #expect(try Self.resolve("2/4") == ShardSelection(index: 2, count: 4))
        #expect(try Self.resolve(" 1/1 ") == ShardSelection(index: 1, count: 1))
        #expect(try Self.resolve("3/3", count: 3) == ShardSelection(index: 3, count: 3))
        #expect(Self.refusal("0/4").contains("numbered 1 to 4"))
        #expect(Self.refusal("5/4").contains("shard 5 of 4 does not exist"))
        #expect(Self.refusal("2/0").contains("not a number of shards"))
        #expect(Self.refusal("4").contains("use I/N"))
        #expect(Self.refusal("two/four").contains("use I/N"))
        #expect(Self.refusal("1/2/3").contains("use I/N"))
        #expect(Self.refusal("1/4", count: 3).contains("--shard-count says 3"))
        #expect(Self.refusal("1/4", count: 0).contains("--shard-count 0"))
    }

    @Test("--shard auto reads Azure Pipelines' job position and total")
    func azurePipelines() throws {
        let env = ["SYSTEM_JOBPOSITIONINPHASE": "2", "SYSTEM_TOTALJOBSINPHASE": "3"]
        #expect(try Self.resolve("auto", env) == ShardSelection(index: 2, count: 3))
        #expect(try Self.resolve("AUTO", count: 3, env) == ShardSelection(index: 2, count: 3))
        #expect(try Self.resolve("auto", count: 5, ["SYSTEM_JOBPOSITIONINPHASE": "4"]) == ShardSelection(index: 4, count: 5))
        let mismatch = Self.refusal("auto", count: 4, env)
        #expect(mismatch.contains("SYSTEM_TOTALJOBSINPHASE is 3 but --shard-count says 4"), "\(mismatch)")
        let noTotal = Self.refusal("auto", ["SYSTEM_JOBPOSITIONINPHASE": "2"])
        #expect(noTotal.contains("SYSTEM_TOTALJOBSINPHASE is unset") && noTotal.contains("SYSTEM_JOBPOSITIONINPHASE=2"), "\(noTotal)")
        let outside = Self.refusal("auto", ["SYSTEM_JOBPOSITIONINPHASE": "4", "SYSTEM_TOTALJOBSINPHASE": "3"])
        #expect(outside.contains("shard 4 of 3 does not exist") && outside.contains("SYSTEM_TOTALJOBSINPHASE=3"), "\(outside)")
        #expect(Self.refusal("auto", ["SYSTEM_JOBPOSITIONINPHASE": "first", "SYSTEM_TOTALJOBSINPHASE": "3"]).contains("'first', not a number"))
    }

    @Test("--shard auto reads Kubernetes' 0-based JOB_COMPLETION_INDEX with --shard-count")
    func kubernetes() throws {
        #expect(try Self.resolve("auto", count: 4, ["JOB_COMPLETION_INDEX": "0"]) == ShardSelection(index: 1, count: 4))
        #expect(try Self.resolve("auto", count: 4, ["JOB_COMPLETION_INDEX": "3"]) == ShardSelection(index: 4, count: 4))
        let noCount = Self.refusal("auto", ["JOB_COMPLETION_INDEX": "1"])
        #expect(noCount.contains("JOB_COMPLETION_INDEX=1") && noCount.contains("--shard-count"), "\(noCount)")
        let outside = Self.refusal("auto", count: 4, ["JOB_COMPLETION_INDEX": "4"])
        #expect(outside.contains("shard 5 of 4 does not exist") && outside.contains("0-based"), "\(outside)")
        #expect(Self.refusal("auto", count: 4, ["JOB_COMPLETION_INDEX": "-1"]).contains("not a 0-based index"))
    }

    @Test("--shard auto with no CI variable names every variable it read")
    func autoWithoutVariables() {
        for environment in [[:], ["SYSTEM_JOBPOSITIONINPHASE": "", "JOB_COMPLETION_INDEX": "  "], ["PATH": "/usr/bin"]] {
            let message = Self.refusal("auto", count: 2, environment)
            for variable in ShardSelection.autoVariables {
                #expect(message.contains("\(variable)=(unset)"), "\(message)")
            }
            #expect(message.contains("--shard ${{ matrix.shard }}/N"), "GitHub's way is named: \(message)")
        }
    }
}
