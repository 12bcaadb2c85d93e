"""REST under /api, generated from one route table onto the resolvers GraphQL uses."""
