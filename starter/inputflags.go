package main

import (
	"github.com/spf13/pflag"

	"github.com/stackrun/stackrun/internal/app/inputflags"
)

// The reflection flag binding lives in internal/app/inputflags, shared with the chat gateway.
type inputFlag = inputflags.Flag

func bindInputFlags(fs *pflag.FlagSet, in any) ([]inputFlag, error) { return inputflags.Bind(fs, in) }

func exampleFlags(flags []inputFlag) string { return inputflags.Example(flags) }
