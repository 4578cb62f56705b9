// The umbrella module: `import Lathe` brings in every Lathe library module.
@_exported import LatheCompress
@_exported import LatheData
@_exported import LatheIO
@_exported import LatheNN
@_exported import LatheTensor
@_exported import LatheText
@_exported import LatheTrain
@_exported import LatheLM
