# Stand-in for turbo-rails' Turbo::StreamsChannel (turbo-rails has no Debian package):
# the same verifier recipe (a MessageVerifier with SHA256 and the JSON serializer, keyed
# by the app's key generator with the salt "turbo/signed_stream_verifier_key"), and the
# same subscribe rule (stream from the verified name, otherwise reject).
module Turbo
  class StreamsChannel < ActionCable::Channel::Base
    def self.verifier
      @verifier ||= ActiveSupport::MessageVerifier.new(
        Rails.application.key_generator.generate_key("turbo/signed_stream_verifier_key"),
        digest: "SHA256", serializer: JSON
      )
    end

    def subscribed
      name = self.class.verifier.verified(params[:signed_stream_name])
      name ? stream_from(name) : reject
    end
  end
end
