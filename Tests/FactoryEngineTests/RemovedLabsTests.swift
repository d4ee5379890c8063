import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud
import Testing

/// A lab removed from Labs.json keeps the factory's images until someone decides: reported on
/// every run, retired with --retire-removed-labs, never forgotten.
@Suite("Labs removed from Labs.json")
struct RemovedLabsTests {
    @Test("a removed lab is reported, its images retired only on request (counted as deletions), and then forgotten")
    func removedLab() async throws {
        var fixture = ExecutorTests.fixture()
        let factory = try await LocalFactory(fixture)
        #expect(try await factory.run("first").failed.isEmpty)
        let images = try await factory.imageNames("TrainingLab")
        #expect(!images.isEmpty, "the lab received the factory's images")
        try await factory.addImageByHand("Handmade", lab: "TrainingLab", tags: [:])

        // TrainingLab leaves Labs.json.
        fixture.labs.removeAll { $0.labName == "TrainingLab" }
        let trainingLab = factory.labID("TrainingLab")
        factory.configuration = try fixture.load()
        let (reported, _) = try await factory.runner().plan()
        #expect(!reported.actions.contains { $0.labID?.name == "TrainingLab" })
        let warning = try #require(reported.diagnostics.first { $0.message.contains("TrainingLab") })
        #expect(warning.severity == .warning)
        #expect(warning.message.contains("its \(images.count) factory image"), "\(warning.message)")
        #expect(warning.hint?.contains("--retire-removed-labs") == true)

        // On request: the factory's images go (deletions count), the hand-made one stays.
        let (retiring, _) = try await factory.runner().plan(retireRemovedLabs: true)
        let retires = retiring.actions.filter { $0.labID?.name == "TrainingLab" }
        #expect(retires.count == images.count && retires.allSatisfy { $0.kind == .retireImage })
        #expect(retiring.deletionCount >= images.count)
        let summary = try await factory.runner().execute(retiring, runID: "retire", stages: Set(Stage.allCases), requireSamePlanBasis: false,
                                                         events: { _ in })
        #expect(summary.failed.isEmpty, "\(summary.failed.map(\.message))")
        #expect(try await factory.observer.listCustomImages(lab: trainingLab).map(\.id.name) == ["Handmade"])

        // Forgotten once empty of the factory's images: no more warnings.
        let (after, _) = try await factory.runner().plan()
        #expect(!after.diagnostics.contains { $0.message.contains("TrainingLab") }, "\(after.diagnostics)")
    }
}
