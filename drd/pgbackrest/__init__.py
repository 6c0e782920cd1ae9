"""pgBackRest adapter: configuration files, command runner, ``info`` parsing."""
