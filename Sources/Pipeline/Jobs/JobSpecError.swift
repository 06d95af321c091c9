import Store

/// What is wrong with a job spec: a config file error, naming the file, the line and the key.
public typealias JobSpecError = ConfigFileError
