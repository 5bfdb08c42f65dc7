package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gridd/gridd/auth"
	"github.com/spf13/cobra"
)

func newKeysCmd() *cobra.Command {
	return group("keys", "Manage API keys", keysHashCmd())
}

func keysHashCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash",
		Short: "Print the bcrypt hash of an API key read from stdin, for gridd's --api-keys-file",
		Long: `Reads one API key (the first line of stdin; on a terminal it asks for it)
and prints its bcrypt hash, the value of "hash" in gridd's --api-keys-file.
The key itself is never stored: give it to the client, worker or operator,
and keep only the hash in the file. Keys are 16 to 72 characters.`,
		Example: `  key=$(openssl rand -hex 32)
  echo "$key" | gridctl keys hash`,
		Args: cobra.NoArgs,
		// It talks to no cluster, so it needs none of the connection flags.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := cmd.InOrStdin()
			if f, ok := in.(*os.File); ok {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					fmt.Fprint(cmd.ErrOrStderr(), "API key (shown as you type): ")
				}
			}
			line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read the key from stdin: %w", err)
			}
			key := strings.TrimRight(line, "\r\n")
			if key == "" {
				return errors.New("no key on stdin: pipe one in, for example: openssl rand -hex 32 | gridctl keys hash")
			}
			h, err := auth.Hash(key)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), h)
			return err
		},
	}
}
