// The umbrella module: `import Lathe` brings in every Lathe library module.
@_exported import LatheTensor
