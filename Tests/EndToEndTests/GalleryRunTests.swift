import Foundation
import Testing

/// Publishing to Azure Compute Gallery end to end: the sample factory with one gallery, on the
/// embedded local cloud and through the Azure backend on `local serve`.
@Suite(.serialized)
struct GalleryRunTests {
    static let env = ["IMAGEFACTORY_LOCAL_LATENCY": "instant", "IMAGEFACTORY_LOCK_SECONDS": "1"]

    /// The sample Labs.json with a `Galleries` entry: two image paths, two regions (the source
    /// region written out, northeurope with two replicas).
    static func labsWithGallery(_ repo: FixtureRepository, imagePaths: [String] = ["Windows/Server 2022", "Linux/Ubuntu 22.04 LTS.json"],
                                imagesToSave: Int = 2, retireMode: String = "Delete") throws -> String {
        let text = try repo.sampleFile("Labs.json")
        var root = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        root["Galleries"] = [[
            "SubscriptionId": "00000000-0000-4000-8000-000000000000", "ResourceGroup": "rg-images", "GalleryName": "Contoso.Images",
            "Location": "westeurope", "ImagePaths": imagePaths,
            "TargetRegions": [["Name": "westeurope"], ["Name": "northeurope", "ReplicaCount": 2]],
            "ImagesToSave": imagesToSave, "RetireMode": retireMode, "Publisher": "Contoso",
        ] as [String: Any]]
        return String(decoding: try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
    }

    struct Show: Decodable {
        struct Replica: Decodable { var region: String; var state: String }
        struct Version: Decodable { var name: String; var tags: [String: String]; var excludeFromLatest: Bool; var replication: [Replica] }
        struct Definition: Decodable { var name: String; var osState: String; var tags: [String: String]; var versions: [Version] }
        struct Gallery: Decodable { var name: String; var location: String; var tags: [String: String]; var definitions: [Definition] }
        var galleries: [Gallery]
    }

    static func show(_ arguments: [String]) throws -> Show {
        let result = try ImageFactory.run(["local", "show", "--json"] + arguments, environment: env)
        #expect(result.status == 0, "\(result)")
        return try JSONDecoder().decode(Show.self, from: Data(result.stdout.utf8))
    }

    @Test("first publish makes the gallery, definitions and versions; a region failing once is retried alone; a rerun changes nothing; a foreign version survives; retention keeps N; a removed path is retired")
    func publishOnTheLocalCloud() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            try repo.commit(["Configuration/Labs.json": try Self.labsWithGallery(repo, imagesToSave: 1)], message: "Publish to a gallery")
            // northeurope's first replication of every version fails.
            try repo.write(".imagefactory/cloud.json", #"{"galleryRegions": {"northeurope": {"failFirstAttempts": 1}}}"#)
            // A version the factory did not make, in a definition the factory will use.
            let foreign = try ImageFactory.run(["local", "add-gallery-version", "--repo", repo.path, "--gallery", "Contoso.Images",
                                                "--definition", "Linux-Ubuntu-22.04-LTS", "--image-version", "1.0.0", "--os", "linux"], environment: Self.env)
            #expect(foreign.status == 0, "\(foreign)")

            let plan = try ImageFactory.run(["plan", "--repo", repo.path], environment: Self.env)
            #expect(plan.status == 0, "\(plan)")
            #expect(plan.stdout.contains("gallery Contoso.Images:") && plan.stdout.contains("ensureImageDefinition") && plan.stdout.contains("publishVersion"), "\(plan.stdout)")

            let first = try ImageFactory.run(["run", "--repo", repo.path, "--report-json", repo.url("out/run.json").path, "--summary-md", repo.url("out/run.md").path],
                                             environment: Self.env)
            #expect(first.status == 0, "\(first)")
            #expect(first.stdout.contains("retrying that region alone"), "\(first.stdout)")
            // The reports show each published version with its regions.
            let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: repo.url("out/run.json"))) as? [String: Any])
            let publishes = (report["actions"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "publishVersion" }
            #expect(publishes.count == 2 && publishes.allSatisfy { $0["target"] as? String == "gallery Contoso.Images" && $0["galleryVersion"] is String })
            #expect(publishes.allSatisfy { ($0["replication"] as? [[String: Any]] ?? []).contains { $0["region"] as? String == "northeurope" && $0["state"] as? String == "Completed" } })
            let markdown = try String(contentsOf: repo.url("out/run.md"), encoding: .utf8)
            #expect(markdown.contains("### Gallery versions") && markdown.contains("northeurope ✓"), "\(markdown)")
            let images = try ImageFactory.run(["images", "--gallery", "Contoso.Images", "--repo", repo.path], environment: Self.env)
            #expect(images.status == 0 && images.stdout.contains("Linux-Ubuntu-22.04-LTS") && images.stdout.contains("northeurope completed"), "\(images)")
            var show = try Self.show(["--repo", repo.path])
            let gallery = try #require(show.galleries.first { $0.name == "Contoso.Images" })
            #expect(gallery.definitions.map(\.name).sorted() == ["Linux-Ubuntu-22.04-LTS", "Windows-Server-2022-Datacenter"])
            for definition in gallery.definitions {
                let owned = definition.versions.filter { $0.tags["ImagePath"] != nil }
                #expect(owned.count == 1, "\(definition.name): \(definition.versions.map(\.name))")
                for version in owned {
                    #expect(Set(version.replication.map(\.region)) == ["westeurope", "northeurope"])
                    #expect(version.replication.allSatisfy { $0.state == "Completed" }, "\(version.replication)")
                }
            }
            #expect(gallery.definitions.first { $0.name == "Linux-Ubuntu-22.04-LTS" }?.versions.contains { $0.name == "1.0.0" } == true)

            let second = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env)
            #expect(second.status == 0 && second.stdout.contains("0 actions"), "\(second)")

            // A changed template: one new version; ImagesToSave 1 retires the old one (never the foreign one).
            let template = "Configuration/GoldenImages/Linux/Ubuntu 22.04 LTS.json"
            let text = try String(contentsOf: repo.url(template), encoding: .utf8)
            try repo.commit([template: text.replacingOccurrences(of: "\"contentVersion\": \"1.0.0.0\"", with: "\"contentVersion\": \"1.0.0.1\"")],
                            message: "Change the Ubuntu image")
            let third = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env)
            #expect(third.status == 0, "\(third)")
            show = try Self.show(["--repo", repo.path])
            let ubuntu = try #require(show.galleries.first?.definitions.first { $0.name == "Linux-Ubuntu-22.04-LTS" })
            #expect(ubuntu.versions.filter { $0.tags["ImagePath"] != nil }.count == 1, "\(ubuntu.versions.map(\.name))")
            #expect(ubuntu.versions.contains { $0.name == "1.0.0" }, "the foreign version survives retention")

            // The gallery stops listing the Windows path: its versions are retired and the emptied definition, the factory's, goes.
            try repo.commit(["Configuration/Labs.json": try Self.labsWithGallery(repo, imagePaths: ["Linux/Ubuntu 22.04 LTS.json"], imagesToSave: 1)],
                            message: "Drop Windows from the gallery")
            let fourth = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env)
            #expect(fourth.status == 0, "\(fourth)")
            show = try Self.show(["--repo", repo.path])
            #expect(show.galleries.first?.definitions.map(\.name) == ["Linux-Ubuntu-22.04-LTS"])
        }
    }

    @Test("the same publish through the Azure backend on local serve converges, and a rerun finds nothing to do")
    func publishThroughTheAzureBackend() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            try repo.commit(["Configuration/Labs.json": try Self.labsWithGallery(repo)], message: "Publish to a gallery")
            let state = repo.url(".served")
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path, "--state-dir", state.path], environment: Self.env).status == 0)
            try repo.write(".served/cloud.json", #"{"galleryRegions": {"northeurope": {"failFirstAttempts": 1}}}"#)
            let served = try ServedCloud(stateDirectory: state, arguments: ["--page-size", "2", "--quiet"])
            defer { served.stop() }
            let first = try ImageFactory.run(["run", "--repo", repo.path], environment: served.azureEnvironment)
            #expect(first.status == 0, "\(first)")
            #expect(first.stdout.contains("retrying that region alone"), "\(first.stdout)")
            let second = try ImageFactory.run(["run", "--repo", repo.path], environment: served.azureEnvironment)
            #expect(second.status == 0 && second.stdout.contains("0 actions"), "\(second)")
            served.stop()
            let show = try Self.show(["--state-dir", state.path])
            let gallery = try #require(show.galleries.first { $0.name == "Contoso.Images" })
            #expect(gallery.definitions.count == 2)
            #expect(gallery.definitions.allSatisfy { $0.versions.count == 1 && $0.versions[0].replication.allSatisfy { $0.state == "Completed" } })
        }
    }

    @Test("a version that failed as a whole is deleted and made again: the run succeeds with one version per definition")
    func versionFailedAsAWhole() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            try repo.commit(["Configuration/Labs.json": try Self.labsWithGallery(repo)], message: "Publish to a gallery")
            // Seed 2: the first version made in one of the two definitions fails as a whole (drawn per definition, whatever the version number).
            var environment = Self.env
            environment["IMAGEFACTORY_LOCAL_FAULTS"] = "seed=2;gallery.operationFailure=0.5"
            let run = try ImageFactory.run(["run", "--repo", repo.path], environment: environment)
            #expect(run.status == 0, "\(run)")
            #expect(run.stdout.contains("failed as a whole; deleting it to make it again"), "the fault happened: \(run.stdout)")
            let definitions = try #require(try Self.show(["--repo", repo.path]).galleries.first).definitions
            #expect(definitions.count == 2 && definitions.allSatisfy { $0.versions.count == 1 && $0.versions[0].replication.allSatisfy { $0.state == "Completed" } },
                    "\(definitions.map { ($0.name, $0.versions.map(\.name)) })")
        }
    }

    @Test("RetireMode ExcludeFromLatest: an old version is first hidden from latest, and deleted a run later")
    func excludeFromLatestFirst() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            try repo.commit(["Configuration/Labs.json": try Self.labsWithGallery(repo, imagePaths: ["Linux/Ubuntu 22.04 LTS.json"], imagesToSave: 1,
                                                                                  retireMode: "ExcludeFromLatest")], message: "Publish to a gallery")
            #expect(try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env).status == 0)
            let template = "Configuration/GoldenImages/Linux/Ubuntu 22.04 LTS.json"
            let text = try String(contentsOf: repo.url(template), encoding: .utf8)
            try repo.commit([template: text.replacingOccurrences(of: "\"contentVersion\": \"1.0.0.0\"", with: "\"contentVersion\": \"1.0.0.2\"")], message: "Change")
            let second = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env)
            #expect(second.status == 0, "\(second)")
            var versions = try #require(try Self.show(["--repo", repo.path]).galleries.first?.definitions.first).versions
            #expect(versions.count == 2, "\(versions.map(\.name))")
            #expect(versions.filter(\.excludeFromLatest).count == 1 && versions.first?.excludeFromLatest == true, "the older one is hidden from latest first")
            let third = try ImageFactory.run(["run", "--repo", repo.path], environment: Self.env)
            #expect(third.status == 0, "\(third)")
            versions = try #require(try Self.show(["--repo", repo.path]).galleries.first?.definitions.first).versions
            #expect(versions.count == 1 && versions[0].excludeFromLatest == false, "a run later it is deleted: \(versions.map(\.name))")
        }
    }

    @Test("a run killed while a version replicates converges on the next run with no second version")
    func killedDuringReplication() throws {
        try FixtureRepository.with { repo in
            try repo.commitSampleConfiguration()
            try repo.commit(["Configuration/Labs.json": try Self.labsWithGallery(repo)], message: "Publish to a gallery")
            #expect(try ImageFactory.run(["local", "init", "--repo", repo.path], environment: Self.env).status == 0)
            let process = try #require(try FactoryRunTests.startHeldRun(repo, holdAfter: "createImageVersion", environment: ["IMAGEFACTORY_LOCAL_LATENCY": "fast"]))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let rerun = try ImageFactory.run(["run", "--repo", repo.path], environment: FactoryRunTests.fast)
            #expect(rerun.status == 0, "\(rerun)")
            let show = try Self.show(["--repo", repo.path])
            let definitions = try #require(show.galleries.first).definitions
            #expect(definitions.count == 2)
            #expect(definitions.allSatisfy { $0.versions.count == 1 }, "\(definitions.map { ($0.name, $0.versions.map(\.name)) })")
        }
    }
}
