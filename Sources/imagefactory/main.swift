// The `imagefactory` executable: everything lives in ImageFactoryCLI, so commands are tested in-process.
import ImageFactoryCLI

await ImageFactoryMain.run()
