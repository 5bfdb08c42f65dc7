package cache

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/gridd/gridd/rpc/griddpb"
)

// Server is the Cache service of a node cache: GetSharedData only. Writes go
// to the central cache, which replicates them.
type Server struct {
	pb.UnimplementedCacheServer
	c *NodeCache
}

// NewServer serves c.
func NewServer(c *NodeCache) *Server { return &Server{c: c} }

// Register adds the service to s.
func (s *Server) Register(g *grpc.Server) { pb.RegisterCacheServer(g, s) }

const readOnly = "a node cache only serves reads; write shared data to the central cache (the Cache service of any gridd node, on its --grpc-addr or --cache-addr)"

func (s *Server) GetSharedData(req *pb.GetSharedDataRequest, stream pb.Cache_GetSharedDataServer) error {
	ctx := stream.Context()
	return s.c.GetSharedData(ctx, req, fromPeer(ctx), stream.Send)
}

func fromPeer(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(peerHopKey)) > 0
}

func (s *Server) SetSharedData(pb.Cache_SetSharedDataServer) error {
	return status.Error(codes.Unimplemented, "SetSharedData: "+readOnly)
}

func (s *Server) UpdateSharedData(pb.Cache_UpdateSharedDataServer) error {
	return status.Error(codes.Unimplemented, "UpdateSharedData: "+readOnly)
}

func (s *Server) DeleteSharedData(context.Context, *pb.DeleteSharedDataRequest) (*pb.DeleteSharedDataResponse, error) {
	return nil, status.Error(codes.Unimplemented, "DeleteSharedData: "+readOnly)
}
