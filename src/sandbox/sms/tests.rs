//! Tests of the client against the sandbox, over real HTTP.
