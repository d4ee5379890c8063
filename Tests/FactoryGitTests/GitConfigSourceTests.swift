import FactoryGit
import FactoryModel
import Foundation
import Testing

@Suite("GitConfigSource reads configuration from real git repositories")
struct GitConfigSourceTests {
    static let datacenter = "Configuration/GoldenImages/Win2016/Datacenter.json"

    /// A repository with a first commit holding one lab and one template.
    @discardableResult
    private func makeRepository(_ repo: GitRepositoryFixture) throws -> String {
        try repo.commit([
            "Configuration/Labs.json": SampleFiles.labs(["Win2016"]),
            Self.datacenter: SampleFiles.template(notes: "first"),
            "README.md": "Image factory configuration\n",
        ], message: "First")
    }

    private func load(_ repo: GitRepositoryFixture, _ mode: GitConfigSource.Mode = .revision("HEAD"),
                      configDirectory: String = "Configuration") throws -> ConfigSnapshot {
        try GitConfigSource(repositoryPath: repo.path, mode: mode, configDirectory: configDirectory).load()
    }

    private func text(_ snapshot: ConfigSnapshot, _ path: String) -> String? {
        snapshot.files.first { $0.path == path }.map { String(decoding: $0.data, as: UTF8.self) }
    }

    @Test("HEAD gives the commit SHA, the files relative to Configuration/ and their exact bytes")
    func readsHead() throws {
        try GitRepositoryFixture.with { repo in
            let sha = try makeRepository(repo)
            let snapshot = try load(repo)
            #expect(snapshot.commit == sha)
            #expect(sha.count == 40)
            #expect(snapshot.configDirectory == "Configuration")
            #expect(snapshot.files.map(\.path).sorted() == ["GoldenImages/Win2016/Datacenter.json", "Labs.json"])
            #expect(text(snapshot, "Labs.json") == SampleFiles.labs(["Win2016"]))
            #expect(text(snapshot, "GoldenImages/Win2016/Datacenter.json") == SampleFiles.template(notes: "first"))
            #expect(snapshot.notes.isEmpty, "\(snapshot.notes)")
            let config = ConfigurationLoader.load(snapshot)
            #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
            #expect(config.commit == sha)
        }
    }

    @Test("a branch name reads that branch's tip")
    func branch() throws {
        try GitRepositoryFixture.with { repo in
            let mainSha = try makeRepository(repo)
            try repo.git("checkout", "--quiet", "-b", "feature")
            let featureSha = try repo.commit(["Configuration/GoldenImages/Win2016/Core.json": SampleFiles.template(notes: "core")])
            try repo.git("checkout", "--quiet", "main")

            let feature = try load(repo, .revision("feature"))
            #expect(feature.commit == featureSha)
            #expect(feature.files.contains { $0.path == "GoldenImages/Win2016/Core.json" })
            let main = try load(repo, .revision("main"))
            #expect(main.commit == mainSha)
            #expect(!main.files.contains { $0.path == "GoldenImages/Win2016/Core.json" })
            #expect(try load(repo, .revision("refs/heads/feature")).commit == featureSha)
        }
    }

    @Test("lightweight and annotated tags resolve to the tagged commit")
    func tags() throws {
        try GitRepositoryFixture.with { repo in
            let tagged = try makeRepository(repo)
            try repo.git("tag", "v1")
            try repo.git("tag", "-a", "v1-annotated", "-m", "Release 1")
            try repo.commit([Self.datacenter: SampleFiles.template(notes: "second")])
            #expect(try repo.git("rev-parse", "v1-annotated") != tagged)  // the tag object, not the commit

            for tag in ["v1", "v1-annotated", "refs/tags/v1"] {
                let snapshot = try load(repo, .revision(tag))
                #expect(snapshot.commit == tagged, "\(tag)")
                #expect(text(snapshot, "GoldenImages/Win2016/Datacenter.json") == SampleFiles.template(notes: "first"), "\(tag)")
            }
        }
    }

    @Test("a full and an abbreviated SHA read that commit")
    func sha() throws {
        try GitRepositoryFixture.with { repo in
            let first = try makeRepository(repo)
            try repo.commit([Self.datacenter: SampleFiles.template(notes: "second")])
            for revision in [first, String(first.prefix(12))] {
                let snapshot = try load(repo, .revision(revision))
                #expect(snapshot.commit == first)
                #expect(text(snapshot, "GoldenImages/Win2016/Datacenter.json") == SampleFiles.template(notes: "first"))
            }
        }
    }

    @Test("HEAD~1 reads the parent commit")
    func parentExpression() throws {
        try GitRepositoryFixture.with { repo in
            let first = try makeRepository(repo)
            let second = try repo.commit(["Configuration/Labs.json": SampleFiles.labs(["Win2016"], labName: "Renamed")])
            let parent = try load(repo, .revision("HEAD~1"))
            #expect(parent.commit == first)
            #expect(text(parent, "Labs.json")?.contains("\"DevLab\"") == true)
            let head = try load(repo, .revision("HEAD"))
            #expect(head.commit == second)
            #expect(text(head, "Labs.json")?.contains("\"Renamed\"") == true)
            #expect(try load(repo, .revision("main^")).commit == first)
        }
    }

    @Test("changes committed after the ref being read are not seen")
    func laterCommitsInvisible() throws {
        try GitRepositoryFixture.with { repo in
            let released = try makeRepository(repo)
            try repo.git("tag", "release")
            try repo.commit([
                "Configuration/Labs.json": SampleFiles.labs(["Win2016", "Linux"]),
                "Configuration/GoldenImages/Linux/Ubuntu.json": SampleFiles.template(notes: "ubuntu", osType: "Linux"),
                Self.datacenter: SampleFiles.template(notes: "changed later"),
            ])
            try repo.git("rm", "--quiet", "README.md")
            try repo.commit(message: "Remove readme")

            let snapshot = try load(repo, .revision("release"))
            #expect(snapshot.commit == released)
            #expect(snapshot.files.map(\.path).sorted() == ["GoldenImages/Win2016/Datacenter.json", "Labs.json"])
            #expect(text(snapshot, "GoldenImages/Win2016/Datacenter.json") == SampleFiles.template(notes: "first"))
            let config = ConfigurationLoader.load(snapshot)
            #expect(config.templates.map(\.description) == ["first"])
            #expect(config.labs.first?.imagePaths == ["Win2016"])
        }
    }

    @Test("nested folders and spaces in folder and file names")
    func nestedFoldersAndSpaces() throws {
        try GitRepositoryFixture.with { repo in
            let paths = [
                "GoldenImages/Windows/Server 2019/Datacenter with IIS.json",
                "GoldenImages/Windows/Server 2019/Datacenter.json",
                "GoldenImages/Linux/Data Science/Deep/Ubuntu 20.04 DSVM.json",
                "GoldenImages/Win2012R2/VS2015 Enterprise with Azure SDK.json",
            ]
            var files = ["Configuration/Labs.json": SampleFiles.labs(["Windows\\Server 2019", "Linux/Data Science", "Win2012R2"])]
            for path in paths { files["Configuration/" + path] = SampleFiles.template(notes: path) }
            try repo.commit(files)

            let snapshot = try load(repo)
            #expect(snapshot.files.map(\.path).sorted() == (paths + ["Labs.json"]).sorted())
            for path in paths { #expect(text(snapshot, path) == SampleFiles.template(notes: path)) }
            let config = ConfigurationLoader.load(snapshot)
            #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
            #expect(config.labs.first?.images.count == 4)
            #expect(config.template(at: "Linux/Data Science/Deep/Ubuntu 20.04 DSVM.json")?.imageName == "Linux_Data-Science_Deep_Ubuntu-20_04-DSVM")
        }
    }

    @Test("files with a UTF-8 BOM or in UTF-16 LE come through byte for byte and load")
    func encodings() throws {
        try GitRepositoryFixture.with { repo in
            let labs = SampleFiles.labs(["Win2016"]).utf16LEWithBOM
            let bom = SampleFiles.template(notes: "UTF-8 with BOM – é").utf8WithBOM
            let utf16 = SampleFiles.template(notes: "UTF-16 LE – ü").utf16LEWithBOM
            try repo.write("Configuration/Labs.json", data: labs)
            try repo.write("Configuration/GoldenImages/Win2016/Bom.json", data: bom)
            try repo.write("Configuration/GoldenImages/Win2016/Utf16.json", data: utf16)
            try repo.commit()

            let snapshot = try load(repo)
            #expect(snapshot.files.first { $0.path == "Labs.json" }?.data == labs)
            #expect(snapshot.files.first { $0.path == "GoldenImages/Win2016/Bom.json" }?.data == bom)
            #expect(snapshot.files.first { $0.path == "GoldenImages/Win2016/Utf16.json" }?.data == utf16)
            let config = ConfigurationLoader.load(snapshot)
            #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
            #expect(config.template(at: "Win2016/Bom.json")?.description == "UTF-8 with BOM – é")
            #expect(config.template(at: "Win2016/Utf16.json")?.description == "UTF-16 LE – ü")
        }
    }

    @Test("blob SHAs are the ones git reports (git rev-parse HEAD:path)")
    func blobShas() throws {
        try GitRepositoryFixture.with { repo in
            try makeRepository(repo)
            try repo.write("Configuration/GoldenImages/Win2016/Utf16 File.json", data: SampleFiles.template().utf16LEWithBOM)
            try repo.write("Configuration/Empty.txt", "")
            try repo.commit()
            let snapshot = try load(repo)
            #expect(snapshot.files.count == 4)
            for file in snapshot.files {
                let expected = try repo.git("rev-parse", "HEAD:Configuration/\(file.path)")
                #expect(file.blobSha == expected, "\(file.path)")
                #expect(file.blobSha == GitBlobHash.sha(of: file.data), "\(file.path)")
            }
            let config = ConfigurationLoader.load(snapshot)
            let datacenterSha = try repo.git("rev-parse", "HEAD:\(Self.datacenter)")
            #expect(config.template(at: "Win2016/Datacenter.json")?.blobSha == datacenterSha)
        }
    }

    @Test("working-tree mode sees uncommitted edits, new and deleted files, with git's blob SHAs")
    func workingTree() throws {
        try GitRepositoryFixture.with { repo in
            try makeRepository(repo)
            try repo.write(Self.datacenter, SampleFiles.template(notes: "edited, not committed"))
            try repo.write("Configuration/GoldenImages/Win2016/New One.json", SampleFiles.template(notes: "new"))
            try repo.remove("Configuration/Labs.json")

            let snapshot = try load(repo, .workingTree)
            #expect(snapshot.commit == nil)
            #expect(snapshot.files.map(\.path) == ["GoldenImages/Win2016/Datacenter.json", "GoldenImages/Win2016/New One.json"])
            #expect(text(snapshot, "GoldenImages/Win2016/Datacenter.json") == SampleFiles.template(notes: "edited, not committed"))
            for file in snapshot.files {
                let expected = try repo.git("hash-object", "Configuration/\(file.path)")
                #expect(file.blobSha == expected, "\(file.path)")
            }
            let note = try #require(snapshot.notes.first)
            #expect(snapshot.notes.count == 1)
            #expect(note.severity == .note)
            #expect(note.message.contains("working tree"))

            // The commit itself is unchanged.
            #expect(text(try load(repo), "GoldenImages/Win2016/Datacenter.json") == SampleFiles.template(notes: "first"))
        }
    }

    @Test("reading a commit while Configuration/ has uncommitted changes adds a note", arguments: [
        "modified", "untracked", "staged", "deleted",
    ])
    func dirtyWorkingTreeNote(change: String) throws {
        try GitRepositoryFixture.with { repo in
            let sha = try makeRepository(repo)
            switch change {
            case "modified": try repo.write(Self.datacenter, SampleFiles.template(notes: "dirty"))
            case "untracked": try repo.write("Configuration/GoldenImages/Win2016/Draft.json", SampleFiles.template(notes: "draft"))
            case "staged":
                try repo.write("Configuration/Labs.json", SampleFiles.labs(["Win2016"], labName: "Staged"))
                try repo.git("add", "Configuration/Labs.json")
            default: try repo.remove(Self.datacenter)
            }
            let snapshot = try load(repo)
            #expect(snapshot.commit == sha)
            // What is read is still the commit.
            #expect(text(snapshot, "GoldenImages/Win2016/Datacenter.json") == SampleFiles.template(notes: "first"))
            #expect(text(snapshot, "Labs.json") == SampleFiles.labs(["Win2016"]))
            let note = try #require(snapshot.notes.first)
            #expect(snapshot.notes.count == 1)
            #expect(note.severity == .note)
            #expect(note.message.contains("1 uncommitted change under Configuration/"))
            #expect(note.message.contains(String(sha.prefix(12))))
            #expect(note.hint?.contains("--worktree") == true)
            // The loader passes it on, and it is not an error.
            let config = ConfigurationLoader.load(snapshot)
            #expect(config.diagnostics.contains(note))
            #expect(config.isValid)
        }
    }

    @Test("the note counts every changed file")
    func dirtyCount() throws {
        try GitRepositoryFixture.with { repo in
            try makeRepository(repo)
            try repo.write(Self.datacenter, SampleFiles.template(notes: "dirty"))
            try repo.write("Configuration/GoldenImages/A.json", "{}")
            try repo.write("Configuration/GoldenImages/B/C.json", "{}")
            let note = try #require(try load(repo).notes.first)
            #expect(note.message.contains("3 uncommitted changes under Configuration/"))
        }
    }

    @Test("uncommitted changes outside Configuration/ add no note")
    func changesElsewhere() throws {
        try GitRepositoryFixture.with { repo in
            try makeRepository(repo)
            try repo.write("README.md", "changed\n")
            try repo.write("Configuration-old/Labs.json", "{}")
            try repo.write("scripts/build.ps1", "Write-Host hi\n")
            let snapshot = try load(repo)
            #expect(snapshot.notes.isEmpty, "\(snapshot.notes)")
        }
    }

    @Test("files git ignores under Configuration/ add no note")
    func ignoredFiles() throws {
        try GitRepositoryFixture.with { repo in
            try makeRepository(repo)
            try repo.commit([".gitignore": "*.bak\n"])
            try repo.write("Configuration/Labs.json.bak", "old copy")
            #expect(try load(repo).notes.isEmpty)
        }
    }

    @Test("a configuration at the repository root is read in both modes, never including .git/")
    func configurationAtRoot() throws {
        try GitRepositoryFixture.with { repo in
            let sha = try repo.commit([
                "Labs.json": SampleFiles.labs(["Win2016"]),
                "GoldenImages/Win2016/Datacenter.json": SampleFiles.template(),
            ])
            for directory in ["", ".", "/"] {
                let committed = try load(repo, configDirectory: directory)
                #expect(committed.commit == sha)
                #expect(committed.configDirectory == "")
                #expect(committed.files.map(\.path).sorted() == ["GoldenImages/Win2016/Datacenter.json", "Labs.json"])
                #expect(committed.notes.isEmpty)
                let worktree = try load(repo, .workingTree, configDirectory: directory)
                #expect(worktree.files.map(\.path) == ["GoldenImages/Win2016/Datacenter.json", "Labs.json"])
                let config = ConfigurationLoader.load(worktree)
                #expect(config.diagnostics.filter { $0.severity != .note }.isEmpty, "\(config.diagnostics)")
            }
        }
    }

    @Test("working-tree mode skips what git ignores, as a commit would never hold it")
    func workingTreeSkipsIgnoredFiles() throws {
        try GitRepositoryFixture.with { repo in
            try makeRepository(repo)
            try repo.write(".gitignore", "*.local.json\n")
            try repo.write("Configuration/GoldenImages/Win2016/Scratch.local.json", SampleFiles.template(notes: "mine only"))
            let snapshot = try load(repo, .workingTree)
            #expect(!snapshot.files.contains { $0.path.hasSuffix("Scratch.local.json") })
            #expect(snapshot.files.contains { $0.path == "GoldenImages/Win2016/Datacenter.json" })
        }
    }

    @Test("an unknown revision throws FactoryError with exit code invalidInput, naming the revision",
          arguments: ["no-such-branch", "v9.9", "0123456789012345678901234567890123456789", "HEAD~5"])
    func badRevision(revision: String) throws {
        try GitRepositoryFixture.with { repo in
            try makeRepository(repo)
            let error = try #require(throws: FactoryError.self) { try load(repo, .revision(revision)) }
            #expect(error.exitCode == .invalidInput)
            #expect(error.description.contains("\"\(revision)\""))
            #expect(error.diagnostics.first?.hint != nil)
        }
    }

    @Test("a revision in a repository without commits is invalid input")
    func emptyRepository() throws {
        try GitRepositoryFixture.with { repo in
            let error = try #require(throws: FactoryError.self) { try load(repo) }
            #expect(error.exitCode == .invalidInput)
        }
    }

    @Test("a missing configuration folder throws FactoryError with exit code invalidInput, in both modes")
    func missingConfigDirectory() throws {
        try GitRepositoryFixture.with { repo in
            try makeRepository(repo)
            let committed = try #require(throws: FactoryError.self) { try load(repo, configDirectory: "Config") }
            #expect(committed.exitCode == .invalidInput)
            #expect(committed.description.contains("Config/"))
            #expect(committed.diagnostics.first?.file == "Config")
            let worktree = try #require(throws: FactoryError.self) { try load(repo, .workingTree, configDirectory: "Config") }
            #expect(worktree.exitCode == .invalidInput)
            // A file where the folder should be is refused too.
            let file = try #require(throws: FactoryError.self) { try load(repo, configDirectory: "README.md") }
            #expect(file.exitCode == .invalidInput)
        }
    }

    @Test("the configuration folder is missing at an older commit")
    func configDirectoryAddedLater() throws {
        try GitRepositoryFixture.with { repo in
            try repo.commit(["README.md": "start\n"], message: "Start")
            try makeRepository(repo)
            let error = try #require(throws: FactoryError.self) { try load(repo, .revision("HEAD~1")) }
            #expect(error.exitCode == .invalidInput)
            #expect(error.description.contains("Configuration/ does not exist"))
        }
    }

    @Test("a path that is not a git repository throws invalidInput")
    func notARepository() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("imagefactory-not-a-repo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let error = try #require(throws: FactoryError.self) {
            try GitConfigSource(repositoryPath: folder.path).load()
        }
        #expect(error.exitCode == .invalidInput)
        let discover = try #require(throws: FactoryError.self) { try GitConfigSource.discoverRepository(from: folder.path) }
        #expect(discover.exitCode == .invalidInput)
    }

    @Test("another configuration folder, nested and with spaces, can be chosen; ./ and trailing / are ignored")
    func customConfigDirectory() throws {
        try GitRepositoryFixture.with { repo in
            try repo.commit([
                "deploy/factory config/Labs.json": SampleFiles.labs(["Win2016"]),
                "deploy/factory config/GoldenImages/Win2016/Datacenter.json": SampleFiles.template(),
            ])
            let snapshot = try load(repo, configDirectory: "./deploy/factory config/")
            #expect(snapshot.configDirectory == "deploy/factory config")
            #expect(snapshot.files.map(\.path).sorted() == ["GoldenImages/Win2016/Datacenter.json", "Labs.json"])
            let config = ConfigurationLoader.load(snapshot)
            #expect(config.diagnostics.isEmpty, "\(config.diagnostics)")
            #expect(config.labs.first?.line == 6)
            let worktree = try load(repo, .workingTree, configDirectory: "deploy\\factory config")
            #expect(worktree.files.map(\.path) == ["GoldenImages/Win2016/Datacenter.json", "Labs.json"])
        }
    }

    @Test("discoverRepository finds the repository from a sub-folder")
    func discoverFromSubfolder() throws {
        try GitRepositoryFixture.with { repo in
            try makeRepository(repo)
            let subfolder = repo.url("Configuration/GoldenImages/Win2016")
            let found = try GitConfigSource.discoverRepository(from: subfolder.path)
            #expect(URL(fileURLWithPath: found).resolvingSymlinksInPath().standardizedFileURL.path == repo.root.standardizedFileURL.path)
            #expect(try GitConfigSource.discoverRepository(from: repo.path) == found)
            // A source opened on the sub-folder reads the same repository.
            let head = try repo.git("rev-parse", "HEAD")
            #expect(try GitConfigSource(repositoryPath: subfolder.path).load().commit == head)
            #expect(try GitConfigSource(repositoryPath: found).load().files.count == 2)
        }
    }
}
